"""Connect the rotators to the real parts, once, from the composition root (govern.bootstrap).

- `services.signing_key_hook`: govern's token-signing key set (govern.broker.signing_keys), seen
  through the small interface the signing_keys rotator and the worker use (rotate, retire_expired,
  self_test). Only when the authorization server is wired. The composition root hands over the key set's
  three operations, so rotation imports nothing of the broker.
- `services.rotation_repository`: the runs and secrets (govern.ports.RotationRepository), set by the
  composition root (govern.store.rotation_runs).
The other rotators need no wiring: store_key calls the secret store's own `rotate_key()` (the same call
as `govern secrets rotate-key`), client_secret uses govern.domain.client_auth (the token endpoint's
rule), and alerts go through `services.notifier` (govern.notify).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SigningKeyHook:
    """Delegates to the key set's operations (govern.broker.signing_keys), each called with the services at
    call time, so a re-wired key set is used."""

    def __init__(self, services: Any, *, rotate: Callable[[Any], str], retire_expired: Callable[[Any], None],
                 self_test: Callable[[Any], bool]):
        self._services = services
        self._rotate, self._retire_expired, self._self_test = rotate, retire_expired, self_test

    def rotate(self) -> str:
        return self._rotate(self._services)

    def retire_expired(self) -> None:
        self._retire_expired(self._services)

    def self_test(self) -> bool:
        return self._self_test(self._services)


def wire_rotation(services: Any, *, rotate: Callable[[Any], str], retire_expired: Callable[[Any], None],
                  self_test: Callable[[Any], bool]) -> None:
    if services.signing_keys is not None and services.signing_key_hook is None:
        services.signing_key_hook = SigningKeyHook(services, rotate=rotate, retire_expired=retire_expired,
                                                   self_test=self_test)
