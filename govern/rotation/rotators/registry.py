"""Rotator discovery: every rotator, built-in or third-party, is an entry point in the `govern.rotators`
group (see pyproject.toml), so plugins and built-ins are found the same way."""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any
import importlib

from govern.errors import NotFound

GROUP = "govern.rotators"

# The built-ins, as declared in pyproject.toml. Used only when govern runs from a source tree that was
# never installed (no dist-info, so no entry points): the names and targets are the same.
_BUILTIN = {
    "static": "govern.rotation.rotators.base:StaticSecretRotator",
    "postgres_role": "govern.rotation.rotators.postgres_role:PostgresRoleRotator",
    "client_secret": "govern.rotation.rotators.client_secret:ClientSecretRotator",
    "signing_keys": "govern.rotation.rotators.signing_keys:SigningKeyRotator",
    "store_key": "govern.rotation.rotators.store_key:StoreKeyRotator",
    "upstream_client_secret": "govern.rotation.rotators.upstream:UpstreamClientSecretRotator",
}


def _targets() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    return {**_BUILTIN, **found}


def rotator_names() -> list[str]:
    return sorted(_targets())


def load_rotator(name: str, cache: dict[str, Any] | None = None) -> Any:
    if cache is not None and name in cache:
        return cache[name]
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            obj = ep.load()()
            break
    else:
        target = _BUILTIN.get(name)
        if target is None:
            raise NotFound(f"no rotator named {name!r}")
        module, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module), attr)()
    if cache is not None:
        cache[name] = obj
    return obj
