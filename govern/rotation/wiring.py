"""Connect the rotators to the real parts, once, from the composition root (govern.bootstrap).

- `services.signing_key_hook`: govern's token-signing key set (govern.broker.signing_keys), seen
  through the small interface the signing_keys rotator and the worker use (rotate, retire_expired,
  self_test). Only when the authorization server is wired.
The other rotators need no wiring: store_key calls the secret store's own `rotate_key()` (the same call
as `govern secrets rotate-key`), client_secret uses govern.domain.client_auth (the token endpoint's
rule), and alerts go through `services.notifier` (govern.notify).
"""
from __future__ import annotations

from typing import Any

from govern.broker.signing_keys import rotate_signing_key, retire_expired_signing_keys, self_test_signing_key


class SigningKeyHook:
    """Delegates to govern.broker.signing_keys; looked up at call time, so a re-wired key set is used."""

    def __init__(self, services: Any):
        self._services = services

    def rotate(self) -> str:
        return rotate_signing_key(self._services)

    def retire_expired(self) -> None:
        retire_expired_signing_keys(self._services)

    def self_test(self) -> bool:
        return self_test_signing_key(self._services)


def wire_rotation(services: Any) -> None:
    if services.signing_keys is not None and services.signing_key_hook is None:
        services.signing_key_hook = SigningKeyHook(services)
