"""Ports: the Protocols the core depends on. Adapters live at the edges; the composition root wires them."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
import time

from govern.domain.offboarding import OffboardCredential, OffboardUser
from govern.domain.revocations import QueuedRevocation, RevocationRequest
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
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, in their order (None where absent or expired): one round trip."""
        ...
    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...
    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_if(self, key: str, value: bytes) -> bool: ...
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int: ...
    def incr_each(self, keys: Sequence[str], ttl: float) -> list[int]:
        """Add 1 to each (distinct) counter and return the new counts, in the order of `keys`: one round trip
        to the shared store, whatever the number of keys (the access-condition rate, govern.policy.conditions)."""
        ...
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

from collections.abc import Iterable  # noqa: E402

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


# --- The broker's repositories (govern.store implements them; the composition root hands them in) ---------
# Each returns plain values (the dataclasses below), never a table row, so the broker imports no SQL.

class LockNotAvailable(Exception):
    """A row lock was not granted within the time asked for (another process holds it)."""


# States of a refresh-token grant attempt in the refresh journal (govern.broker.upstream.service).
STARTED, SUCCEEDED, FAILED, IN_DOUBT = "started", "succeeded", "failed", "in_doubt"


@dataclass(frozen=True)
class RefreshAttempt:
    id: int
    attempt_id: str
    state: str


class RefreshJournal(Protocol):
    """Every refresh-token grant attempt, recorded before the upstream is called (govern.store.refresh_journal)."""

    def unresolved(self, credential: str, principal: str) -> list[RefreshAttempt]: ...
    def start(self, credential: str, principal: str, old_version: int | None) -> str: ...
    def finish(self, attempt: str, state: str, *, new_version: int | None = None, error: str | None = None) -> None: ...
    def resolve(self, ids: list[int], state: str, error: str | None = None) -> None: ...


class TokenRowLock(Protocol):
    """One held `SELECT ... FOR UPDATE` on a key's row, with the sealed result it held when granted."""

    sealed: bytes | None
    expires_at: dt.datetime | None

    def publish(self, value: bytes, expires_at: dt.datetime | None) -> None: ...


class TokenRowLocks(Protocol):
    """Single flight across processes on PostgreSQL (govern.store.upstream_token_lock)."""

    def forget(self, key: str) -> None: ...
    def sealed(self, key: str) -> bytes | None: ...
    def forget_if(self, key: str, refused: Callable[[bytes], bool]) -> None: ...
    def hold(self, key: str, timeout: float) -> AbstractContextManager[TokenRowLock]:
        """Raises LockNotAvailable when the lock is not granted within `timeout` seconds."""
        ...


@dataclass(frozen=True)
class StagedVersion:
    version: int
    stage: str  # current | previous
    expires_at: dt.datetime | None  # timezone-aware


@dataclass(frozen=True)
class CredentialSecretRef:
    """Where a credential's secret field is stored, and its versions staged `current` and `previous`."""

    id: int
    path: str
    current_version: int | None
    set_at: dt.datetime | None  # timezone-aware
    staged: tuple[StagedVersion, ...] = ()
    overlap: str | None = None  # the credential's `rotation.overlap`, as stored (a duration such as "1h")


class CredentialSecretRefs(Protocol):
    """The SecretRef and SecretVersion rows of external credentials (govern.store.credential_secret_refs)."""

    def find(self, credential: str, principal: str | None, field: str, *,
             with_versions: bool = False) -> CredentialSecretRef | None: ...
    def newest_path(self, credential: str, principal: str | None, field: str) -> str | None: ...
    def record_version(self, credential: str, principal: str | None, field: str, *, path: str, store: str,
                       version: int, now: dt.datetime) -> None: ...


@dataclass(frozen=True)
class ConnectSubject:
    """A credential and one of its principals, as the connect flow reads them."""

    credential: str
    protocol: str
    token_url: str | None
    client_id: str | None
    client_auth_method: str | None
    authorize_url: str | None
    scopes: tuple[str, ...]
    audience: str | None
    resource: tuple[str, ...]
    token_params: dict[str, Any]
    leeway_seconds: float | None
    rotation: dict[str, Any]
    principal: str
    principal_id: int
    subject: str | None


class UpstreamPrincipals(Protocol):
    """Principals' connection state (govern.store.upstream_principals)."""

    def connect_subject(self, credential: str, principal: str) -> ConnectSubject:
        """Raises NotFound for an unknown credential or principal."""
        ...

    def mark_connected(self, principal_id: int, now: dt.datetime) -> str | None:
        """Set connected_at; returns the principal's integration user (external id), if it has one."""
        ...

    def needs_reconnect_since(self, principal_id: int) -> dt.datetime | None: ...
    def mark_needs_reconnect(self, principal_id: int, now: dt.datetime) -> bool:
        """True for the one caller that set the mark (a conditional UPDATE)."""
        ...

    def clear_needs_reconnect(self, credential: str, principal: str) -> tuple[bool, dt.datetime | None]:
        """(True, when it was set) for the one caller that cleared the mark."""
        ...


@dataclass(frozen=True)
class SigningKeyRecord:
    kid: str
    public_jwk: dict[str, Any]
    secret_path: str
    state: str  # active | retiring | retired
    retire_after: dt.datetime | None  # timezone-aware
    alg: str = "RS256"
    created_at: dt.datetime | None = None


class SigningKeyRecords(Protocol):
    """The `signing_key` table: govern's token-signing key set, private halves in the secret store."""

    def retire_due(self, now: dt.datetime) -> list[SigningKeyRecord]:
        """Mark retiring keys past `retire_after` retired; returns them (their secrets are deleted next)."""
        ...

    def published(self) -> list[SigningKeyRecord]:
        """Active and retiring keys, newest first."""
        ...

    def active_or_create(self, create: Callable[[], SigningKeyRecord]) -> SigningKeyRecord:
        """The newest active key; without one, `create()` makes it and it is stored in the same transaction."""
        ...

    def rotate(self, retire_after: dt.datetime, create: Callable[[], SigningKeyRecord]) -> SigningKeyRecord:
        """Active keys become retiring until `retire_after`; `create()`'s key is stored active, in one transaction."""
        ...


class DecisionKeyRecords(Protocol):
    """The `decision_log_key` table: names and secret-store paths of the decision chain's HMAC keys."""

    def path_of(self, kid: str) -> str | None: ...
    def newest_active(self) -> str | None: ...
    def add(self, kid: str, path: str, now: dt.datetime) -> None: ...
    def retire_active(self) -> None: ...
    def listing(self) -> list[dict[str, Any]]: ...


class DecisionRecords(Protocol):
    """The `decision` and `decision_checkpoint` tables (govern.store.decision_records). Each write takes the
    chain lock, reads the head and chains the records under `key` in one transaction."""

    def append_chained(self, batch: list[dict[str, Any]], kid: str, key: bytes | None, *,
                       checkpoint: Callable[[int, int], bool], now: Callable[[], dt.datetime]) -> None:
        """`checkpoint(first_id, last_id)`: whether to sign a checkpoint after this batch."""
        ...

    def checkpoint(self, kid: str, key: bytes, now: dt.datetime, *, only_if_moved: bool = False) -> dict | None: ...
    def iter_records(self, batch: int = 1000, after: int = 0) -> Iterator[dict[str, Any]]: ...
    def checkpoints(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class QueuedCallRecord:
    """A queued call or a dead letter, as delivery reads it (never a credential)."""

    id: int
    named_credential: str
    system: str
    caller: str
    principal: str | None
    method: str
    path: str
    query: str
    headers: dict[str, Any]
    body: bytes
    correlation_id: str
    idempotency_key: str | None
    source_ip: str | None
    scopes: tuple[str, ...]
    attempts: int
    next_attempt_at: dt.datetime | None = None  # timezone-aware; queued calls only
    status: str = "queued"
    response_status: int | None = None
    last_status: int | None = None  # dead letters only
    reason: str = ""  # dead letters only
    queued_call_id: int | None = None  # dead letters only
    created_at: dt.datetime | None = None


class DueCalls(Protocol):
    """Queued calls claimed for one delivery round (row locks held on PostgreSQL); committed at the end.
    `attempts`: the call's attempts counted so far, this one included."""

    calls: list[QueuedCallRecord]

    def delivered(self, call_id: int, status: int, attempts: int, now: dt.datetime) -> None: ...
    def retry_later(self, call_id: int, until: dt.datetime, error: str, attempts: int) -> None: ...
    def bury(self, call_id: int, reason: str, attempts: int, now: dt.datetime) -> None:
        """Move the call to the dead-letter queue with `reason` (an error code or a deciding rule)."""
        ...


class DeadLetterClaim(Protocol):
    """One dead letter taken for a retry (`call` is None when there is no such dead letter)."""

    call: QueuedCallRecord | None

    def delivered(self, status: int) -> None:
        """Out of the queue; its queued call, if any, is marked delivered."""
        ...

    def failed(self, reason: str) -> None: ...


class ProxyQueueStore(Protocol):
    """The `queued_call` and `dead_letter` tables (govern.store.proxy_queue)."""

    def enqueue(self, call: QueuedCallRecord) -> int:
        """Store the call (its `id` is ignored); returns its id."""
        ...

    def queued(self, call_id: int) -> QueuedCallRecord | None: ...
    def dead_letter_of(self, call_id: int) -> QueuedCallRecord | None: ...
    def claim_due(self, limit: int) -> AbstractContextManager[DueCalls]: ...
    def claim_dead(self, dead_id: int) -> AbstractContextManager[DeadLetterClaim]: ...
    def dead_letters(self) -> list[QueuedCallRecord]: ...
    def drop_dead(self, dead_id: int) -> bool: ...


@dataclass(frozen=True)
class SystemBreakerSetting:
    system_id: int
    system: str
    named_credential: str | None  # the named credential whose `circuit_breaker` applies (the first one found)
    circuit_breaker: dict[str, Any] | None


class BreakerSettings(Protocol):
    def systems(self) -> list[SystemBreakerSetting]: ...


class OffboardRecords(Protocol):
    """What `govern offboard` reads and changes in the store (govern.store.offboarding)."""

    def user(self, user: str) -> OffboardUser:
        """Raise NotFound when there is no such integration user."""
        ...

    def retire(self, user_id: int, now: dt.datetime) -> str: ...
    def disconnect(self, principal_id: int) -> None: ...
    def refresh_token_ref(self, credential: str, principal: str) -> str | None: ...


class RevocationQueue(Protocol):
    """The upstream revocation queue (govern.store.revocation_queue): what govern must revoke at a provider
    (RFC 7009), worked by `govern worker` (govern.broker.upstream.revocation_queue). Never a token value."""

    def enqueue(self, requests: list[RevocationRequest]) -> list[int]: ...

    def principal_requests(self, credential: str, principal: str, reason: str) -> list[RevocationRequest]:
        """What disconnecting the principal would queue. Raise NotFound for an unknown credential or principal."""
        ...

    def disconnect(self, credential: str, principal: str, now: dt.datetime, *,
                   actor: str) -> tuple[bool, list[RevocationRequest]]:
        """In one transaction: mark the principal disconnected, queue its revocations, record who did it."""
        ...

    def connected(self, credential: str, principal: str) -> bool: ...
    def claim_due(self, now: dt.datetime, limit: int, lease_seconds: float) -> list[QueuedRevocation]: ...

    def finish(self, item_id: int, *, status: str, attempts: int, detail: str, last_status: int | None,
               next_attempt_at: dt.datetime | None, now: dt.datetime) -> None: ...

    def counts(self) -> dict[str, int]: ...
    def listing(self, *, finished_since: dt.datetime | None = None, limit: int = 200) -> list[QueuedRevocation]: ...
    def retry_failed(self, now: dt.datetime) -> int: ...
    def credential(self, credential: str) -> OffboardCredential | None: ...
    def unfinished(self, credential: str, reason: str) -> int: ...
    def principal(self, credential: str, principal: str) -> tuple[int, str | None, dt.datetime | None] | None: ...
