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


# --- Rotation's seams (govern.store.rotation_runs and rotation_refs implement them; govern.rotation uses them) --

from contextlib import AbstractContextManager  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402

from govern.domain.rotation import (  # noqa: E402
    ClientSecretHashes,
    CredentialRotationTarget,
    Finish,
    RefRotationInputs,
    RefRotationSettings,
    Reminder,
    RunChange,
    RunRecord,
    SecretRefView,
    Started,
)


class RotationRepository(Protocol):
    """Rotation runs, the secrets they rotate and the rows their rotators change, one transaction per call.

    Every write that races another worker is conditional (a claim, a fenced step, a due date taken) and
    says whether it won. `pinned()` keeps one connection for a worker's pass."""

    def pinned(self) -> AbstractContextManager[None]: ...

    # secrets
    def find_ref(self, name: str) -> SecretRefView:
        """Raise NotFound when no secret has that name."""
        ...

    def ref_name(self, ref_id: int) -> str: ...
    def due_refs(self, now: dt.datetime) -> list[SecretRefView]: ...
    def system_key(self, ref: SecretRefView) -> str: ...
    def active_run(self, ref_id: int) -> RunRecord | None: ...

    # starting and claiming
    def create_run(self, ref_id: int, now: dt.datetime, *, due_only: bool, worker: str | None,
                   lease_until: dt.datetime | None) -> Started:
        """Create the run of one secret (leased to `worker` when given); Started.why says why not."""
        ...

    def create_next_due(self, now: dt.datetime, skip: set[int], worker: str, lease_until: dt.datetime) -> Started | None:
        """Create and lease the run of any due secret no other worker is starting; None when nothing is due."""
        ...

    def claim(self, worker: str, now: dt.datetime, lease_until: dt.datetime, *, only: int | None = None,
              ignore_backoff: bool = False) -> tuple[RunRecord, SecretRefView] | None: ...

    def load(self, run_id: int) -> tuple[RunRecord, SecretRefView]:
        """Raise NotFound when there is no such run."""
        ...

    # executing
    def save_step(self, run_id: int, worker: str, change: RunChange, finish: Finish | None = None) -> bool:
        """Write a step's transition while `worker` holds the run (and the finish, in the same transaction).
        False: the lease was lost to another worker, nothing was written."""
        ...

    def release(self, run_id: int, worker: str) -> None: ...
    def previous_versions(self, ref_id: int, other_than: int) -> list[int]: ...

    # operator actions
    def confirm_run(self, run_id: int, state: str, record: dict[str, Any], now: dt.datetime) -> bool: ...

    def requeue_run(self, run_id: int, state: str, record: dict[str, Any], now: dt.datetime) -> bool:
        """Raise Conflict when another run of the secret is active."""
        ...

    def append_step(self, run_id: int, record: dict[str, Any], *, state: str) -> bool: ...

    # housekeeping
    def revoke_next_expired(self, now: dt.datetime,
                            revoke: Callable[[SecretRefView, int], dt.datetime | None]) -> bool:
        """Take one previous version whose overlap is over (locked while `revoke` runs). `revoke` returns None
        when it revoked the version, else when to try again. False when none is left."""
        ...

    def take_reminders(self, now: dt.datetime, next_at: dt.datetime) -> list[Reminder]:
        """Runs awaiting an operator and secrets rotated by hand whose reminder is due; each moved to `next_at`."""
        ...

    # what the rotators change at govern itself or read of the landscape
    def client_secret_hashes(self, user: str) -> ClientSecretHashes: ...

    def replace_client_secret(self, user: str, *, expected_hash: str | None, new_hash: str,
                              previous_expires_at: dt.datetime, now: dt.datetime) -> bool: ...

    def restore_previous_client_secret(self, user: str, *, expected_hash: str | None) -> bool: ...
    def clear_previous_client_secret(self, user: str, *, expected_previous_hash: str) -> bool: ...
    def rotation_credential(self, external_id: str) -> CredentialRotationTarget: ...


class RotationSettingsRows(Protocol):
    """The stored secrets' derived rotation settings, in the caller's transaction (govern.rotation.sync)."""

    def load(self, *, ref_ids: Iterable[int] = (), credentials: Iterable[str] = (),
             users: Iterable[str] = ()) -> list[RefRotationInputs]: ...

    def save(self, settings: RefRotationSettings) -> None: ...
