"""Ports: the Protocols the core depends on. Adapters live at the edges; the composition root wires them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
import time

from govern.domain.secret import Secret


class Clock(Protocol):
    def now(self) -> dt.datetime: ...  # timezone-aware UTC
    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class SecretMetadata:
    path: str
    version: int
    created_at: dt.datetime | None
    versions: tuple[int, ...] = ()


@runtime_checkable
class SecretStore(Protocol):
    """Key/value secret storage with versions and check-and-set (the KV v2 model)."""

    kind: str

    def put(self, path: str, value: Secret, *, cas: int | None = None) -> SecretMetadata:
        """Write a new version. With `cas`, fail with SecretConflict unless the current version is `cas` (0: must not exist)."""
        ...

    def get(self, path: str, *, version: int | None = None) -> Secret: ...

    def metadata(self, path: str) -> SecretMetadata: ...

    def delete(self, path: str) -> None:
        """Delete every version of the secret at `path`."""
        ...

    def list_paths(self) -> list[str]: ...

    def ping(self) -> None:
        """Raise SecretStoreUnavailable when the store cannot be reached."""
        ...


class Cache(Protocol):
    """Shared cache, counters and locks: in-process for one process, Redis across processes."""

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...
    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_if(self, key: str, value: bytes) -> bool: ...
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int: ...
    def ping(self) -> None: ...


class Cipher(Protocol):
    """Seals data govern keeps at rest outside the secret store (cached tokens, connect state)."""

    def seal(self, data: bytes) -> bytes: ...
    def open(self, blob: bytes) -> bytes: ...


class Notifier(Protocol):
    def notify(self, event: str, payload: dict[str, Any]) -> None: ...


# --- The broker's seams (govern.broker implements them; the proxy and the API use them) -------------

from govern.domain.access import AccessDecision, AccessRequest, Caller, UpstreamToken  # noqa: E402


class CallerAuthenticator(Protocol):
    def authenticate(self, authorization: str | None, peer_ip: str, forwarded_for: str | None) -> Caller:
        """Validate a govern access token and the source IP; raise Unauthorized / AccessDenied."""
        ...


class PolicyDecider(Protocol):
    def decide(self, request: AccessRequest) -> AccessDecision: ...


class DecisionLog(Protocol):
    def append(self, request: AccessRequest | None, decision: AccessDecision | None, **fields: Any) -> None:
        """Append one decision record (hash-chained). Must not block the hot path on the database."""
        ...


class UpstreamTokenSource(Protocol):
    def get_token(self, named_credential: str, principal: str | None, scopes: tuple[str, ...] = (),
                  *, force_refresh: bool = False, rejected: str | None = None) -> UpstreamToken:
        """`rejected`: the access token the upstream refused; replaced only while it is still the held one."""
        ...

    def invalidate(self, named_credential: str, principal: str | None, scopes: tuple[str, ...] = (),
                   *, token: str | None = None) -> None:
        """Drop the cached token; with `token`, only while the cache still holds that access token."""
        ...
