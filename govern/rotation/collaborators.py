"""What rotation works with, each under its own name and type: the runner (govern.rotation.runner) and every
rotator (through RotationContext.collaborators) see these and nothing else of the composition root.

Built from the composition root's Services by govern.rotation.wiring.rotation_collaborators (issue #15,
"One wiring": no service takes the whole bag)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from govern.ports import Cipher, Clock, Notifier, RotationRepository, SecretStore


class SigningKeyOperations(Protocol):
    """govern's own token-signing key set as rotation sees it (govern.rotation.wiring.SigningKeyHook)."""

    def rotate(self) -> str: ...
    def retire_expired(self) -> None: ...
    def self_test(self) -> bool: ...


@dataclass(frozen=True)
class RotationCollaborators:
    clock: Clock
    notifier: Notifier  # govern's one notifier (govern.notify): failed, parked, recovered, reminders
    # A new repository of rotation runs and secrets per call (each pins its own connection for a worker pass);
    # None in an instance built without rotation (the runner then refuses to start).
    repositories: Callable[[], RotationRepository] | None = None
    secret_store: SecretStore | None = None  # None: "no secret store is configured" per item
    cache_cipher: Cipher | None = None  # re-encrypted by the store_key rotator when it has rotate()
    signing_keys: SigningKeyOperations | None = None  # None: the signing_keys rotator is "not configured"
    postgres_admin_url: str | None = None  # the postgres_role rotator's admin connection
