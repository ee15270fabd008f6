"""Connect rotation to the real parts, from the composition root (govern.bootstrap).

- `services.signing_key_hook`: govern's token-signing key set (govern.broker.signing_keys), seen
  through the small interface the signing_keys rotator and the worker use (rotate, retire_expired,
  self_test). Only when the authorization server is wired. The composition root hands over the key set's
  three operations, so rotation imports nothing of the broker.
- `services.rotation_repository`: the runs and secrets (govern.ports.RotationRepository), set by the
  composition root (govern.store.rotation_runs).
- `rotation_collaborators(services)`: the typed, frozen RotationCollaborators (govern.rotation.collaborators)
  the runner and the rotators work with; `rotation_service(services, ...)` builds a RotationService on them.
  Neither the runner nor a rotator holds the whole Services (issue #15).
The other rotators need no wiring: store_key calls the secret store's own `rotate_key()` (the same call
as `govern secrets rotate-key`), client_secret uses govern.domain.client_auth (the token endpoint's
rule), and alerts go through `services.notifier` (govern.notify).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from govern.notify import build_notifier
from govern.rotation.collaborators import RotationCollaborators
from govern.rotation.runner import RotationService


class SigningKeyHook:
    """Delegates to the key set's operations (govern.broker.signing_keys), each called with the key set
    current at call time (`keys()`), so a re-wired key set is used."""

    def __init__(self, keys: Callable[[], Any], *, rotate: Callable[[Any], str], retire_expired: Callable[[Any], None],
                 self_test: Callable[[Any], bool]):
        self._keys = keys
        self._rotate, self._retire_expired, self._self_test = rotate, retire_expired, self_test

    def rotate(self) -> str:
        return self._rotate(self._keys())

    def retire_expired(self) -> None:
        self._retire_expired(self._keys())

    def self_test(self) -> bool:
        return self._self_test(self._keys())


def wire_rotation(services: Any, *, rotate: Callable[[Any], str], retire_expired: Callable[[Any], None],
                  self_test: Callable[[Any], bool]) -> None:
    if services.signing_keys is not None and services.signing_key_hook is None:
        services.signing_key_hook = SigningKeyHook(lambda: services.signing_keys, rotate=rotate,
                                                   retire_expired=retire_expired, self_test=self_test)


def rotation_collaborators(services: Any) -> RotationCollaborators:
    """What rotation uses of the composition root's Services, read once when a rotation service is built
    (a CLI command, an API request, a worker's start)."""
    return RotationCollaborators(
        clock=services.clock,
        notifier=services.notifier or build_notifier(services.settings, services.clock),
        repositories=services.rotation_repository,
        secret_store=services.secret_store,
        cache_cipher=services.cache_cipher,
        signing_keys=services.signing_key_hook,
        postgres_admin_url=services.postgres_admin_url,
    )


def rotation_service(services: Any, **options: Any) -> RotationService:
    """A RotationService (govern.rotation.runner) on the collaborators of `services`; `options` are its own
    (worker_id, policy, lease, rng, hook, ...)."""
    return RotationService(rotation_collaborators(services), **options)
