"""The Rotator protocol: the five target-specific operations of a staged rotation.

The runner (govern.rotation.runner) owns the run's persisted state and the staging of SecretVersion
rows; a rotator only talks to its target and to the secret store. Every method must be idempotent:
after a crash the runner calls the same method again with the same context.
"""
from __future__ import annotations

import datetime as dt
import secrets as _random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from govern.domain.rotation import SecretRefView
from govern.domain.secret import Secret
from govern.errors import GovernError, SecretNotFound
from govern.ports import RotationRepository, SecretStore
from govern.rotation.collaborators import RotationCollaborators


class RotationTestFailed(GovernError):
    code = "rotation_test_failed"
    status = 502
    title = "The new secret did not work at the target"


class NotConfigured(GovernError):
    code = "rotation_not_configured"
    status = 409
    title = "This rotator is not configured"


class NotSupported(GovernError):
    code = "rotation_not_supported"
    status = 409
    title = "Not supported by this secret store"


STAGING_PREFIX = "_pending/"


def staging_path(path: str) -> str:
    """Where a rotation stages its pending version: apart from the secret's own path, so that a reader of
    the latest version at `path` (govern, or an integration reading the vault directly) never gets a secret
    that has not been set and tested at the target yet. The runner copies it to `path` when the run
    finishes (govern.rotation.runner, `finish`)."""
    return STAGING_PREFIX + path


@dataclass
class RotationContext:
    ref: SecretRefView  # govern.domain.rotation
    run_id: int | None
    collaborators: RotationCollaborators  # govern.rotation.collaborators: what a rotator may use
    now: dt.datetime
    pending_version: int | None = None
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> SecretStore:
        store = self.collaborators.secret_store
        if store is None:
            raise NotConfigured("no secret store is configured (GOVERN_SECRET_STORE)")
        return store

    @property
    def records(self) -> RotationRepository:
        """The rows a rotator reads or changes at govern itself (an integration user's client secret, a
        credential's settings), one transaction per call (collaborators.repositories, from the composition root)."""
        factory = self.collaborators.repositories
        if factory is None:
            raise NotConfigured("rotation has no repository (services.rotation_repository)")
        return factory()

    def pending(self) -> Secret:
        """The staged secret: `pending_version` is a version at staging_path(ref.path)."""
        if self.pending_version is None:
            raise GovernError("the run has no pending version")
        return self.store.get(staging_path(self.ref.path), version=self.pending_version)

    def current(self) -> Secret | None:
        if not self.ref.current_version:
            return None
        try:
            return self.store.get(self.ref.path, version=self.ref.current_version)
        except SecretNotFound:
            return None


@runtime_checkable
class Rotator(Protocol):
    name: str
    manual: bool  # True when `set` may end in "awaiting confirmation"

    def create_pending(self, ctx: RotationContext) -> int | None:
        """Stage a new version; return its version number in the store (None if the target makes its own)."""
        ...

    def set(self, ctx: RotationContext) -> bool:
        """Put the pending secret in place at the target. Return False when an operator must confirm."""
        ...

    def test(self, ctx: RotationContext) -> None:
        """Prove the pending secret works at the target; raise RotationTestFailed if it does not."""
        ...

    def finish(self, ctx: RotationContext) -> None:
        """Target-side work when pending becomes current (often nothing)."""
        ...

    def revoke_previous(self, ctx: RotationContext, version: int | None) -> None:
        """The overlap is over: make the previous version stop working at the target."""
        ...


class StoredSecretRotator:
    """Shared behaviour for rotators whose new value govern generates and keeps in the secret store."""

    name = "stored"
    manual = False

    def generate(self, ctx: RotationContext) -> Secret:
        return Secret(_random.token_urlsafe(32))

    def create_pending(self, ctx: RotationContext) -> int | None:
        """Stage a new value at staging_path(ref.path), never at the secret's own path. Idempotent: a staged
        value that is not the current secret is one a crashed attempt already wrote, so it is reused instead
        of writing another (check-and-set, so two writers cannot both stage)."""
        store = ctx.store
        staging = staging_path(ctx.ref.path)
        try:
            latest = store.metadata(staging).version
        except SecretNotFound:
            latest = 0
        if latest:
            current = ctx.current()
            if current is None or store.get(staging, version=latest).reveal() != current.reveal():
                return latest
        return store.put(staging, self.generate(ctx), cas=latest).version

    def set(self, ctx: RotationContext) -> bool:
        return True

    def test(self, ctx: RotationContext) -> None:
        if not ctx.pending():
            raise RotationTestFailed("the pending version reads back empty")

    def finish(self, ctx: RotationContext) -> None:
        return None

    def revoke_previous(self, ctx: RotationContext, version: int | None) -> None:
        return None


class StaticSecretRotator(StoredSecretRotator):
    """A secret with no target system (e.g. a shared key handed out by govern): set is a no-op and
    the test reads the new version back from the store."""

    name = "static"
