"""Rotation runs and the secrets they rotate, in the database (govern.ports.RotationRepository).

Claiming work so that any number of workers cooperate without a coordinator: on PostgreSQL
`SELECT ... FOR UPDATE SKIP LOCKED` picks a row no other worker is looking at, and a lease (`claimed_until`)
lets the next worker resume a run whose worker died. SQLite has one writer at a time, so a single conditional
`UPDATE ... WHERE claimed_until IS NULL OR claimed_until < now` is the claim; its row count says whether this
worker won. Every transition is a fenced UPDATE (`WHERE claimed_by = me`), so a worker whose lease ran out
and was taken over can never overwrite the new owner's progress.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import Session as SQLModelSession
from sqlmodel import SQLModel, col, select

from govern.domain import rotation as r
from govern.errors import Conflict, NotFound
from govern.ports import RotationRepository
from govern.store.db import row_id, rows_matched, session_scope
from govern.store.rotation_tables import RotationSystemCap
from govern.store.tables import ExternalCredential, IntegrationUser, RotationRun, SecretRef, SecretVersion, System


def _update(model: type[SQLModel]) -> sa.Update:
    """A bulk UPDATE that leaves the session's objects alone."""
    return sa.update(model).execution_options(synchronize_session=False)


def ref_view(ref: SecretRef) -> r.SecretRefView:
    return r.SecretRefView(id=row_id(ref), external_id=ref.external_id, owner_kind=ref.owner_kind, owner=ref.owner,
                           principal=ref.principal, field=ref.field, path=ref.path,
                           current_version=ref.current_version, rotator=ref.rotator or "",
                           overlap_seconds=ref.overlap_seconds, schedule=ref.schedule)


def run_record(run: RotationRun) -> r.RunRecord:
    return r.RunRecord(id=row_id(run), secret_ref_id=run.secret_ref_id, rotator=run.rotator, state=run.state,
                       system_key=run.system_key, attempts=run.attempts, pending_version=run.pending_version,
                       next_attempt_at=r.aware(run.next_attempt_at), claimed_by=run.claimed_by,
                       claimed_until=r.aware(run.claimed_until), steps=list(run.steps or []), error=run.error,
                       started_at=r.aware(run.started_at), finished_at=r.aware(run.finished_at))


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _claimable(now: dt.datetime, *, ignore_backoff: bool = False) -> sa.ColumnElement[bool]:
    return sa.and_(
        col(RotationRun.state).in_(r.RUNNABLE),
        sa.true() if ignore_backoff else
        sa.or_(col(RotationRun.next_attempt_at).is_(None), col(RotationRun.next_attempt_at) <= now),
        sa.or_(col(RotationRun.claimed_until).is_(None), col(RotationRun.claimed_until) < now),
    )


def _system_key(session: Session, owner_kind: str, owner: str) -> str:
    """The system a secret's rotation touches: a credential's System, otherwise `owner_kind:owner`."""
    if owner_kind == "credential":
        row = session.execute(select(col(System.external_id))
                              .join(ExternalCredential, col(ExternalCredential.system_id) == col(System.id))
                              .where(ExternalCredential.external_id == owner)).scalar_one_or_none()
        if row:
            return f"system:{row}"
    return f"{owner_kind}:{owner}"


def _lock_system(session: Session, key: str) -> None:
    """Serialise run creation per system (PostgreSQL advisory transaction lock; SQLite already has one writer)."""
    if _is_postgres(session):
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "govern.rotation:" + key})


class SqlRotationRepository:
    """govern.ports.RotationRepository over the govern database. One per rotation service (its pinned
    connection is its own)."""

    def __init__(self, engine: sa.Engine, sessions: sessionmaker[Session]):
        self._engine = engine
        self._sessions = sessions
        self._pinned_sessions: sessionmaker[Session] | None = None

    def _session(self) -> AbstractContextManager[Session]:
        return session_scope(self._pinned_sessions or self._sessions)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Use one connection for a whole pass: a worker runs many short transactions, and checking a
        connection out of the pool (with its pre-ping) for each one doubles the round trips."""
        if self._pinned_sessions is not None:
            yield
            return
        conn = self._engine.connect()
        try:
            conn.commit()  # the pre-ping may have begun a transaction; start clean
            self._pinned_sessions = sessionmaker(bind=conn, class_=SQLModelSession, expire_on_commit=False)
            yield
        finally:
            self._pinned_sessions = None
            conn.close()

    # --- secrets ------------------------------------------------------------------------------------
    def find_ref(self, name: str) -> r.SecretRefView:
        with self._session() as s:
            ref = s.execute(select(SecretRef).where(SecretRef.external_id == name)).scalar_one_or_none()
            if ref is None:
                raise NotFound(f"no secret named {name}")
            return ref_view(ref)

    def ref_name(self, ref_id: int) -> str:
        with self._session() as s:
            return s.get_one(SecretRef, ref_id).external_id

    def due_refs(self, now: dt.datetime) -> list[r.SecretRefView]:
        with self._session() as s:
            active = select(col(RotationRun.secret_ref_id)).where(col(RotationRun.state).in_(r.ACTIVE))
            # Secrets rotated by hand (a schedule, no rotator) are listed too: the report says so.
            rows = s.execute(select(SecretRef).where(
                sa.or_(col(SecretRef.rotator).is_not(None), col(SecretRef.schedule).is_not(None)),
                col(SecretRef.next_due_at).is_not(None), col(SecretRef.next_due_at) <= now,
                col(SecretRef.id).not_in(active)).order_by(col(SecretRef.next_due_at), col(SecretRef.id))).scalars()
            return [ref_view(ref) for ref in rows]

    def system_key(self, ref: r.SecretRefView) -> str:
        with self._session() as s:
            return _system_key(s, ref.owner_kind, ref.owner)

    def active_run(self, ref_id: int) -> r.RunRecord | None:
        with self._session() as s:
            run = s.execute(select(RotationRun).where(RotationRun.secret_ref_id == ref_id,
                                                      col(RotationRun.state).in_(r.ACTIVE))).scalar_one_or_none()
            return run_record(run) if run is not None else None

    # --- starting and claiming ----------------------------------------------------------------------
    def create_run(self, ref_id: int, now: dt.datetime, *, due_only: bool, worker: str | None,
                   lease_until: dt.datetime | None) -> r.Started:
        try:
            with self._session() as s:
                ref = s.get(SecretRef, ref_id)
                if ref is None or not ref.rotator:
                    return r.Started(None, None, "no rotator configured (rotated by hand)")
                return self._create(s, ref, now, due_only=due_only, worker=worker, lease_until=lease_until)
        except IntegrityError:
            return r.Started(None, None, "another run is already active")

    def create_next_due(self, now: dt.datetime, skip: set[int], worker: str, lease_until: dt.datetime) -> r.Started | None:
        view: r.SecretRefView | None = None
        try:
            with self._session() as s:
                stmt = (select(SecretRef).where(col(SecretRef.rotator).is_not(None), col(SecretRef.next_due_at).is_not(None),
                                                col(SecretRef.next_due_at) <= now)
                        .order_by(col(SecretRef.next_due_at), col(SecretRef.id)).limit(1))
                if skip:
                    stmt = stmt.where(col(SecretRef.id).not_in(skip))
                if _is_postgres(s):
                    stmt = stmt.with_for_update(skip_locked=True)
                ref = s.execute(stmt).scalar_one_or_none()
                if ref is None:
                    return None
                view = ref_view(ref)
                started = self._create(s, ref, now, due_only=True, worker=worker, lease_until=lease_until)
                return r.Started(started.run, view, started.why)
        except IntegrityError:
            return r.Started(None, view, "another run is already active")

    def _create(self, s: Session, ref: SecretRef, now: dt.datetime, *, due_only: bool, worker: str | None,
                lease_until: dt.datetime | None) -> r.Started:
        view = ref_view(ref)
        cond: list[sa.ColumnElement[bool]] = [col(SecretRef.id) == ref.id]
        if due_only:
            cond += [col(SecretRef.next_due_at).is_not(None), col(SecretRef.next_due_at) <= now]
        # First the row (serialises workers per secret, and takes SQLite's write lock), then the system.
        if rows_matched(s.execute(_update(SecretRef).where(*cond).values(next_due_at=None))) != 1:
            s.rollback()
            return r.Started(None, view, "not due (already taken)")
        key = _system_key(s, ref.owner_kind, ref.owner)
        _lock_system(s, key)
        # Not forced, the unique index is the guard (IntegrityError); forced, say which run.
        active = not due_only and s.execute(select(RotationRun.id).where(
            col(RotationRun.secret_ref_id) == ref.id, col(RotationRun.state).in_(r.ACTIVE))).scalar()
        if active:
            s.rollback()
            return r.Started(None, view, f"run {active} is already active")
        busy, cap = s.execute(select(
            select(sa.func.count()).select_from(RotationRun).where(
                col(RotationRun.system_key) == key, col(RotationRun.state).in_(r.ACTIVE)).scalar_subquery(),
            select(RotationSystemCap.max_concurrent).where(RotationSystemCap.system_key == key).scalar_subquery(),
        )).one()
        cap = cap or 1
        if busy >= cap:
            s.rollback()  # keeps next_due_at: it is started when the system is free
            return r.Started(None, view, f"system {key} is at its concurrency cap ({cap})")
        run = RotationRun(secret_ref_id=row_id(ref), rotator=ref.rotator or "", state=r.CREATED, system_key=key,
                          next_attempt_at=now, started_at=now, steps=[])
        if worker is not None:
            run.claimed_by, run.claimed_until = worker, lease_until
        s.add(run)
        s.flush()
        return r.Started(run_record(run), view)

    def claim(self, worker: str, now: dt.datetime, lease_until: dt.datetime, *, only: int | None = None,
              ignore_backoff: bool = False) -> tuple[r.RunRecord, r.SecretRefView] | None:
        """Claim one runnable run (or the run `only`) and read it with its secret, in one transaction. A run
        still leased to a live worker is never claimed; `ignore_backoff` (an operator asking for this run by
        name) does not wait for a failed step's retry time."""
        with self._session() as s:
            run_id = self._claim_next(s, worker, now, lease_until, only, ignore_backoff)
            if run_id is None:
                return None
            s.expire_all()
            run = s.get_one(RotationRun, run_id)
            return run_record(run), ref_view(s.get_one(SecretRef, run.secret_ref_id))

    @staticmethod
    def _claim_next(s: Session, worker: str, now: dt.datetime, lease_until: dt.datetime, only: int | None,
                    ignore_backoff: bool) -> int | None:
        cond = _claimable(now, ignore_backoff=ignore_backoff)
        if only is not None:
            cond = sa.and_(cond, col(RotationRun.id) == only)
        values = {"claimed_by": worker, "claimed_until": lease_until}
        if _is_postgres(s):
            stmt = (select(col(RotationRun.id)).where(cond).order_by(col(RotationRun.next_attempt_at), col(RotationRun.id))
                    .limit(1).with_for_update(skip_locked=True))
            run_id = s.execute(stmt).scalar_one_or_none()
            if run_id is None:
                return None
            s.execute(_update(RotationRun).where(col(RotationRun.id) == run_id).values(**values))
            return run_id
        candidates = s.execute(select(col(RotationRun.id)).where(cond).order_by(col(RotationRun.id)).limit(10)).scalars().all()
        for candidate in candidates:
            res = s.execute(_update(RotationRun).where(col(RotationRun.id) == candidate, cond).values(**values))
            if rows_matched(res) == 1:
                return candidate
        return None

    def load(self, run_id: int) -> tuple[r.RunRecord, r.SecretRefView]:
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            return run_record(run), ref_view(s.get_one(SecretRef, run.secret_ref_id))

    # --- executing ----------------------------------------------------------------------------------
    def save_step(self, run_id: int, worker: str, change: r.RunChange, finish: r.Finish | None = None) -> bool:
        values: dict[str, Any] = {"state": change.state, "attempts": change.attempts, "steps": change.steps,
                                  "next_attempt_at": change.next_attempt_at, "claimed_until": change.claimed_until,
                                  "error": change.error}
        if change.finished_at is not None:
            values["finished_at"] = change.finished_at
        if change.pending_version is not None:
            values["pending_version"] = change.pending_version
        with self._session() as s:
            res = s.execute(_update(RotationRun)
                            .where(col(RotationRun.id) == run_id, col(RotationRun.claimed_by) == worker).values(**values))
            if rows_matched(res) != 1:
                s.rollback()
                return False
            # The pending version is staged apart (rotators.base.staging_path): it gets a secret_version row
            # only when it is promoted to the secret's own path, so the rows describe that path truly.
            if finish is not None:
                self._promote(s, finish)
        return True

    @staticmethod
    def _promote(s: Session, finish: r.Finish) -> None:
        """promoted -> current, current -> previous (valid for the overlap window), and every older previous
        -> revoked (a target keeps one previous secret: the set of this run replaced it), in the finish
        transaction. So only versions that still work are `previous`, however many rotations overlap."""
        values: dict[str, Any] = {"set_at": finish.set_at, "next_due_at": finish.next_due_at}
        promoted, now, ref_id = finish.promotion, finish.set_at, finish.ref_id
        if promoted.version is not None:
            sv = _update(SecretVersion)
            older = sv.where(col(SecretVersion.secret_ref_id) == ref_id, col(SecretVersion.stage) == "previous",
                             col(SecretVersion.version) != promoted.version)
            # Revoked at the target by the finish step; one whose revocation failed expires now instead,
            # so no reader tries it and the worker's revoke_expired retries it.
            s.execute(older.where(col(SecretVersion.version).in_(promoted.retired)).values(stage="revoked"))
            s.execute(older.where(col(SecretVersion.version).not_in(promoted.retired)).values(expires_at=now))
            s.execute(sv.where(col(SecretVersion.secret_ref_id) == ref_id, col(SecretVersion.stage) == "current",
                               col(SecretVersion.version) != promoted.version)
                      .values(stage="previous", expires_at=now + dt.timedelta(seconds=finish.overlap_seconds)))
            if rows_matched(s.execute(sv.where(col(SecretVersion.secret_ref_id) == ref_id,
                                               col(SecretVersion.version) == promoted.version)
                                      .values(stage="current", expires_at=None))) == 0:
                s.add(SecretVersion(secret_ref_id=ref_id, version=promoted.version, stage="current", created_at=now))
            values["current_version"] = promoted.version
        s.execute(_update(SecretRef).where(col(SecretRef.id) == ref_id).values(**values))

    def release(self, run_id: int, worker: str) -> None:
        with self._session() as s:
            s.execute(_update(RotationRun).where(col(RotationRun.id) == run_id, col(RotationRun.claimed_by) == worker)
                      .values(claimed_until=None))

    def previous_versions(self, ref_id: int, other_than: int) -> list[int]:
        with self._session() as s:
            return list(s.execute(select(SecretVersion.version).where(
                SecretVersion.secret_ref_id == ref_id, SecretVersion.stage == "previous",
                SecretVersion.version != other_than)).scalars())

    # --- operator actions ---------------------------------------------------------------------------
    def confirm_run(self, run_id: int, state: str, record: dict[str, Any], now: dt.datetime) -> bool:
        return self._advance(run_id, r.AWAITING, record, state=state, next_attempt_at=now, claimed_until=None)

    def requeue_run(self, run_id: int, state: str, record: dict[str, Any], now: dt.datetime) -> bool:
        try:
            return self._advance(run_id, r.PARKED, record, state=state, attempts=0, next_attempt_at=now,
                                 claimed_until=None, finished_at=None)
        except IntegrityError:
            raise Conflict("another run of this secret is active") from None

    def append_step(self, run_id: int, record: dict[str, Any], *, state: str) -> bool:
        return self._advance(run_id, state, record)

    def _advance(self, run_id: int, expected: str, record: dict[str, Any], **values: Any) -> bool:
        """Append `record` to the run's steps and write `values`, only while the run is in state `expected`."""
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            res = s.execute(_update(RotationRun).where(col(RotationRun.id) == run_id, col(RotationRun.state) == expected)
                            .values(steps=[*(run.steps or []), record], **values))
            return rows_matched(res) == 1

    # --- housekeeping -------------------------------------------------------------------------------
    def revoke_next_expired(self, now: dt.datetime,
                            revoke: Callable[[r.SecretRefView, int], dt.datetime | None]) -> bool:
        with self._session() as s:
            stmt = (select(SecretVersion).where(col(SecretVersion.stage) == "previous", col(SecretVersion.expires_at) <= now)
                    .order_by(col(SecretVersion.id)).limit(1))
            if _is_postgres(s):
                stmt = stmt.with_for_update(skip_locked=True)
            sv = s.execute(stmt).scalar_one_or_none()
            if sv is None:
                return False
            retry_at = revoke(ref_view(s.get_one(SecretRef, sv.secret_ref_id)), sv.version)
            if retry_at is None:
                sv.stage = "revoked"
            else:
                sv.expires_at = retry_at
            return True

    def take_reminders(self, now: dt.datetime, next_at: dt.datetime) -> list[r.Reminder]:
        taken: list[r.Reminder] = []
        with self._session() as s:
            rows = s.execute(select(RotationRun, SecretRef).join(SecretRef, col(SecretRef.id) == col(RotationRun.secret_ref_id))
                             .where(col(RotationRun.state) == r.AWAITING, col(RotationRun.next_attempt_at) <= now)).all()
            for run, ref in rows:
                res = s.execute(_update(RotationRun).where(col(RotationRun.id) == run.id,
                                                           col(RotationRun.next_attempt_at) == run.next_attempt_at)
                                .values(next_attempt_at=next_at))
                if rows_matched(res) == 1:
                    taken.append(r.Reminder(ref.external_id, run_id=run.id, rotator=run.rotator))
            # Secrets with a schedule but no rotator are rotated by hand: remind when due, then daily.
            due = s.execute(select(SecretRef).where(col(SecretRef.rotator).is_(None), col(SecretRef.schedule).is_not(None),
                                                    col(SecretRef.next_due_at) <= now)).scalars().all()
            for ref in due:
                res = s.execute(_update(SecretRef).where(col(SecretRef.id) == ref.id,
                                                         col(SecretRef.next_due_at) == ref.next_due_at)
                                .values(next_due_at=next_at))
                if rows_matched(res) == 1:
                    taken.append(r.Reminder(ref.external_id, schedule=ref.schedule))
        return taken

    # --- what rotators change at govern itself or read of the landscape -----------------------------
    @staticmethod
    def _user(s: Session, user: str) -> IntegrationUser:
        row = s.execute(select(IntegrationUser).where(IntegrationUser.external_id == user)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no integration user {user}")
        return row

    def client_secret_hashes(self, user: str) -> r.ClientSecretHashes:
        with self._session() as s:
            row = self._user(s, user)
            return r.ClientSecretHashes(user=row.external_id, status=row.status, client_secret_hash=row.client_secret_hash,
                                        previous_client_secret_hash=row.previous_client_secret_hash,
                                        previous_secret_expires_at=r.aware(row.previous_secret_expires_at))

    def _set_user(self, user: str, cond: sa.ColumnElement[bool], **values: Any) -> bool:
        with self._session() as s:
            self._user(s, user)
            res = s.execute(_update(IntegrationUser).where(col(IntegrationUser.external_id) == user, cond).values(**values))
            return rows_matched(res) == 1

    @staticmethod
    def _is(column: Any, value: str | None) -> sa.ColumnElement[bool]:
        return col(column).is_(None) if value is None else col(column) == value

    def replace_client_secret(self, user: str, *, expected_hash: str | None, new_hash: str,
                              previous_expires_at: dt.datetime, now: dt.datetime) -> bool:
        """The new hash becomes current and the current one previous (valid until `previous_expires_at`),
        while the current hash is still `expected_hash`."""
        return self._set_user(user, self._is(IntegrationUser.client_secret_hash, expected_hash),
                              previous_client_secret_hash=IntegrationUser.client_secret_hash,
                              previous_secret_expires_at=previous_expires_at, client_secret_hash=new_hash,
                              client_secret_set_at=now, updated_at=now)

    def restore_previous_client_secret(self, user: str, *, expected_hash: str | None) -> bool:
        return self._set_user(user, sa.and_(self._is(IntegrationUser.client_secret_hash, expected_hash),
                                            col(IntegrationUser.previous_client_secret_hash).is_not(None)),
                              client_secret_hash=IntegrationUser.previous_client_secret_hash,
                              previous_client_secret_hash=None, previous_secret_expires_at=None)

    def clear_previous_client_secret(self, user: str, *, expected_previous_hash: str) -> bool:
        return self._set_user(user, col(IntegrationUser.previous_client_secret_hash) == expected_previous_hash,
                              previous_client_secret_hash=None, previous_secret_expires_at=None)

    def rotation_credential(self, external_id: str) -> r.CredentialRotationTarget:
        with self._session() as s:
            cred = s.execute(select(ExternalCredential).where(ExternalCredential.external_id == external_id)).scalar_one_or_none()
            if cred is None:
                raise NotFound(f"no external credential {external_id}")
            return r.CredentialRotationTarget(external_id=cred.external_id, client_id=cred.client_id,
                                              token_url=cred.token_url, scopes=tuple(cred.scopes or ()),
                                              client_auth_method=cred.client_auth_method,
                                              rotation=dict(cred.rotation or {}))


if TYPE_CHECKING:  # mypy checks the adapter against its port
    _PORT: type[RotationRepository] = SqlRotationRepository
