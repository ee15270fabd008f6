"""Rotation's values: the states of a run and the records the rotation service and its repository exchange.

The repository (govern.ports.RotationRepository, implemented in govern.store.rotation_runs) reads and writes
these; the rotation service (govern.rotation) never sees a table row or a session. Pure: no database, no clock.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

CREATED, PENDING, AWAITING, SET, TESTED = "created", "pending", "awaiting_confirmation", "set", "tested"
FINISHED, PARKED, CANCELLED = "finished", "parked", "cancelled"
TERMINAL = frozenset({FINISHED, PARKED, CANCELLED})
ACTIVE = frozenset({CREATED, PENDING, AWAITING, SET, TESTED})
# The states a worker can claim and advance (an awaiting run waits for an operator).
RUNNABLE = (CREATED, PENDING, SET, TESTED)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns; every value govern writes is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@dataclass(frozen=True)
class SecretRefView:
    """A detached copy of a stored secret's reference (rotators and the runner never touch table rows)."""

    id: int
    external_id: str
    owner_kind: str
    owner: str
    principal: str | None
    field: str
    path: str
    current_version: int | None
    rotator: str  # "" when the secret has no automatic rotator
    overlap_seconds: int
    schedule: str | None = None


@dataclass
class RunRecord:
    """One rotation run as stored. The runner keeps its own copy while it holds the run's lease."""

    id: int
    secret_ref_id: int
    rotator: str
    state: str
    system_key: str | None = None
    attempts: int = 0
    pending_version: int | None = None
    next_attempt_at: dt.datetime | None = None
    claimed_by: str | None = None
    claimed_until: dt.datetime | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


@dataclass(frozen=True)
class RunChange:
    """What a step's transition writes to its run (one fenced UPDATE). `finished_at` and `pending_version`
    are written only when set."""

    state: str
    attempts: int
    steps: list[dict[str, Any]]
    next_attempt_at: dt.datetime | None
    claimed_until: dt.datetime | None
    error: str | None
    finished_at: dt.datetime | None = None
    pending_version: int | None = None

    def applied_to(self, run: RunRecord) -> None:
        run.state, run.attempts, run.steps = self.state, self.attempts, self.steps
        run.next_attempt_at, run.claimed_until, run.error = self.next_attempt_at, self.claimed_until, self.error
        if self.finished_at is not None:
            run.finished_at = self.finished_at
        if self.pending_version is not None:
            run.pending_version = self.pending_version


@dataclass(frozen=True)
class Promotion:
    """What the finish step did in the secret store: the version the staged secret became at the secret's
    own path, and the superseded previous versions it revoked at the target."""

    version: int | None
    retired: tuple[int, ...] = ()


@dataclass(frozen=True)
class Finish:
    """The finish transaction's changes to the secret: promoted -> current, current -> previous (valid for
    `overlap_seconds`), older previous versions revoked or expired; when it was set and when it is next due."""

    ref_id: int
    set_at: dt.datetime
    next_due_at: dt.datetime | None
    overlap_seconds: int
    promotion: Promotion


@dataclass(frozen=True)
class Started:
    """The result of creating a run: the run (claimed when asked), or why none was created."""

    run: RunRecord | None
    ref: SecretRefView | None
    why: str = ""


@dataclass(frozen=True)
class Reminder:
    """A reminder the repository took (a run waiting for an operator, or a secret rotated by hand that is due)."""

    secret: str
    run_id: int | None = None
    rotator: str | None = None
    schedule: str | None = None


@dataclass(frozen=True)
class ClientSecretHashes:
    """An integration user's govern client secret as govern.domain.client_auth.verify_client_secret reads it."""

    user: str
    status: str
    client_secret_hash: str | None
    previous_client_secret_hash: str | None
    previous_secret_expires_at: dt.datetime | None


@dataclass(frozen=True)
class CredentialRotationTarget:
    """What the upstream_client_secret rotator needs of an external credential."""

    external_id: str
    client_id: str | None
    token_url: str | None
    scopes: tuple[str, ...]
    client_auth_method: str | None
    rotation: dict[str, Any]


@dataclass(frozen=True)
class RefRotationInputs:
    """A stored secret's rotation settings and what they derive from (govern.rotation.sync)."""

    ref_id: int
    owner_kind: str
    owner: str
    field: str
    rotator: str | None
    schedule: str | None
    overlap_seconds: int
    next_due_at: dt.datetime | None
    set_at: dt.datetime | None
    protocol: str | None  # the credential's protocol, for a credential's secret
    rotation: dict[str, Any] | None  # the owner's rotation configuration
    run_active: bool


@dataclass(frozen=True)
class RefRotationSettings:
    """The derived rotation settings sync writes back to a stored secret."""

    ref_id: int
    rotator: str | None
    schedule: str | None
    overlap_seconds: int
    next_due_at: dt.datetime | None
