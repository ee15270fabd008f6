"""The rotation runner: drives govern.rotation.machine over persisted `rotation_run` rows.

Every transition is written with a fenced UPDATE (`WHERE claimed_by = me`), so a worker whose lease ran
out and was taken over can never overwrite the new owner's progress. Between steps the state is in the
database, which is what makes every step resumable by any worker.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session as SQLModelSession
from sqlmodel import select

from govern.errors import Conflict, GovernError, NotFound
from govern.logs import redact_text
from govern.rotation import claims, machine, schedule
from govern.rotation.rotators import RotationContext, SecretRefView, load_rotator
from govern.store.db import session_scope
from govern.store.rotation_tables import RotationSystemCap
from govern.store.tables import ExternalCredential, RotationRun, SecretRef, SecretVersion, System

log = logging.getLogger("govern.rotation")


class LostLease(Exception):
    """Another worker took the run over (our lease expired); stop touching it."""


def describe_error(exc: BaseException) -> str:
    """A redacted, secret-free description: govern errors carry curated text; others only their type."""
    if isinstance(exc, GovernError):
        return redact_text(f"{exc.code}: {exc.detail}")[:500]
    sqlstate = getattr(exc, "sqlstate", None)
    return type(exc).__name__ + (f" (sqlstate {sqlstate})" if sqlstate else "")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def view(ref: SecretRef) -> SecretRefView:
    return SecretRefView(id=ref.id, external_id=ref.external_id, owner_kind=ref.owner_kind, owner=ref.owner,
                         principal=ref.principal, field=ref.field, path=ref.path,
                         current_version=ref.current_version, rotator=ref.rotator or "",
                         overlap_seconds=ref.overlap_seconds)


def system_key(session, ref: SecretRef) -> str:
    """The system a secret's rotation touches: a credential's System, otherwise `owner_kind:owner`."""
    if ref.owner_kind == "credential":
        row = session.execute(select(System.external_id).join(ExternalCredential, ExternalCredential.system_id == System.id)
                              .where(ExternalCredential.external_id == ref.owner)).scalar_one_or_none()
        if row:
            return f"system:{row}"
    return f"{ref.owner_kind}:{ref.owner}"


@dataclass
class Outcome:
    """One item of a batch report."""

    secret: str
    status: str  # finished | awaiting_confirmation | retrying | parked | skipped | failed | would_rotate
    run_id: int | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("retrying", "parked", "failed")

    def as_dict(self) -> dict[str, Any]:
        return {"secret": self.secret, "status": self.status, "run_id": self.run_id, "detail": self.detail}


@dataclass
class RotationService:
    services: Any
    worker_id: str = field(default_factory=default_worker_id)
    policy: machine.RetryPolicy = field(default_factory=machine.RetryPolicy)
    lease: dt.timedelta = dt.timedelta(seconds=120)
    reminder_every: dt.timedelta = dt.timedelta(hours=24)
    rng: Any = None  # random.Random-like, for jitter; None: no jitter
    notifier: Any = None
    # Test seam: called as hook(point, run_id, step); "after_step" fires once a step is persisted and
    # "before_persist" after the target was touched but before the state was written.
    hook: Callable[[str, int, str], None] | None = None
    _rotators: dict[str, Any] = field(default_factory=dict)
    _pinned_sessions: Any = None
    _claimed: dict[int, tuple[Any, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if self.notifier is None:
            from govern.rotation.notify import build_notifier

            self.notifier = self.services.extras.get("rotation_notifier") or build_notifier(self.services.settings)

    # --- helpers ----------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return self.services.clock.now()

    def _session(self):
        return session_scope(self._pinned_sessions or self.services.sessions)

    @contextmanager
    def pinned(self):
        """Use one connection for a whole pass: a worker runs many short transactions, and checking a
        connection out of the pool (with its pre-ping) for each one doubles the round trips."""
        if self._pinned_sessions is not None:
            yield
            return
        conn = self.services.engine.connect()
        try:
            conn.commit()  # the pre-ping may have begun a transaction; start clean
            self._pinned_sessions = sessionmaker(bind=conn, class_=SQLModelSession, expire_on_commit=False)
            yield
        finally:
            self._pinned_sessions = None
            conn.close()

    def _rotator(self, name: str):
        return load_rotator(name, self._rotators)

    def _notify(self, event: str, run_id: int | None, secret: str, **payload: Any) -> None:
        try:
            self.notifier.notify(event, {"run_id": run_id, "secret": secret, "at": self._now().isoformat(), **payload})
        except Exception as exc:  # noqa: BLE001 - notifications never break the run
            log.warning("notifier failed: %s", type(exc).__name__)

    def find_ref(self, name: str) -> SecretRef:
        with self._session() as s:
            ref = s.execute(select(SecretRef).where(SecretRef.external_id == name)).scalar_one_or_none()
            if ref is None:
                raise NotFound(f"no secret named {name}")
            return ref

    # --- planning and starting --------------------------------------------------------------------
    def due(self, now: dt.datetime | None = None) -> list[SecretRef]:
        now = now or self._now()
        with self._session() as s:
            active = select(RotationRun.secret_ref_id).where(RotationRun.state.in_(machine.ACTIVE))
            return list(s.execute(select(SecretRef).where(
                SecretRef.rotator.is_not(None), SecretRef.next_due_at.is_not(None), SecretRef.next_due_at <= now,
                SecretRef.id.not_in(active)).order_by(SecretRef.next_due_at, SecretRef.id)).scalars())

    def plan(self, refs: list[SecretRef]) -> list[Outcome]:
        """Dry run: what would happen per item. Reads only."""
        out = []
        with self._session() as s:
            for ref in refs:
                try:
                    self._rotator(ref.rotator or "")
                except GovernError as exc:
                    out.append(Outcome(ref.external_id, "failed", detail=describe_error(exc)))
                    continue
                out.append(Outcome(ref.external_id, "would_rotate",
                                   detail=f"rotator {ref.rotator}, system {system_key(s, ref)}"))
        return out

    def start(self, ref_id: int, *, force: bool = False, claim: bool = False) -> tuple[int | None, str]:
        """Create the run for one secret. Returns (run_id, "") or (None, why not).

        Not forced, the secret must still be due: the conditional UPDATE of next_due_at is the claim on
        the schedule, so of many workers that saw it due exactly one creates the run. With `claim`, the
        new run is leased to this worker in the same transaction."""
        now = self._now()
        try:
            with self._session() as s:
                ref = s.get(SecretRef, ref_id)
                if ref is None or not ref.rotator:
                    return None, "no rotator configured"
                return self._create_run(s, ref, now, due_only=not force, claim=claim)
        except IntegrityError:
            return None, "another run is already active"

    def start_next_due(self, skip: set[int]) -> tuple[int | None, str, int | None]:
        """Pick any due secret no other worker is starting (SKIP LOCKED), create its run and claim it.
        Returns (run_id, why not, secret id); (None, "", None) when nothing is due."""
        now = self._now()
        try:
            with self._session() as s:
                stmt = (select(SecretRef).where(SecretRef.rotator.is_not(None), SecretRef.next_due_at.is_not(None),
                                                SecretRef.next_due_at <= now)
                        .order_by(SecretRef.next_due_at, SecretRef.id).limit(1))
                if skip:
                    stmt = stmt.where(SecretRef.id.not_in(skip))
                if claims.is_postgres(s):
                    stmt = stmt.with_for_update(skip_locked=True)
                ref = s.execute(stmt).scalar_one_or_none()
                if ref is None:
                    return None, "", None
                run_id, why = self._create_run(s, ref, now, due_only=True, claim=True)
                return run_id, why, ref.id
        except IntegrityError:
            return None, "another run is already active", ref.id

    def _create_run(self, s, ref: SecretRef, now: dt.datetime, *, due_only: bool, claim: bool) -> tuple[int | None, str]:
        cond = [SecretRef.id == ref.id]
        if due_only:
            cond += [SecretRef.next_due_at.is_not(None), SecretRef.next_due_at <= now]
        # First the row (serialises workers per secret, and takes SQLite's write lock), then the system.
        if s.execute(sa.update(SecretRef).execution_options(synchronize_session=False)
                     .where(*cond).values(next_due_at=None)).rowcount != 1:
            s.rollback()
            return None, "not due (already taken)"
        key = system_key(s, ref)
        claims.lock_system(s, key)
        # Not forced, the unique index is the guard (IntegrityError); forced, say which run.
        active = not due_only and s.execute(select(RotationRun.id).where(
            RotationRun.secret_ref_id == ref.id, RotationRun.state.in_(machine.ACTIVE))).scalar()
        if active:
            s.rollback()
            return None, f"run {active} is already active"
        busy, cap = s.execute(select(
            select(sa.func.count()).select_from(RotationRun).where(
                RotationRun.system_key == key, RotationRun.state.in_(machine.ACTIVE)).scalar_subquery(),
            select(RotationSystemCap.max_concurrent).where(RotationSystemCap.system_key == key).scalar_subquery(),
        )).one()
        cap = cap or 1
        if busy >= cap:
            s.rollback()  # keeps next_due_at: it is started when the system is free
            return None, f"system {key} is at its concurrency cap ({cap})"
        run = RotationRun(secret_ref_id=ref.id, rotator=ref.rotator, state=machine.CREATED, system_key=key,
                          next_attempt_at=now, started_at=now, steps=[])
        if claim:
            run.claimed_by, run.claimed_until = self.worker_id, now + self.lease
        s.add(run)
        s.flush()
        if claim:
            self._claimed[run.id] = (run, ref)
        return run.id, ""

    # --- executing --------------------------------------------------------------------------------
    def claim(self, only: int | None = None) -> int | None:
        """Claim a run and read it (with its secret) in the same transaction, for `execute`."""
        with self._session() as s:
            run_id = claims.claim_next(s, self.worker_id, self._now(), self.lease, only=only)
            if run_id is not None:
                s.expire_all()
                run = s.get(RotationRun, run_id)
                self._claimed[run_id] = (run, s.get(SecretRef, run.secret_ref_id))
            return run_id

    def _load(self, run_id: int) -> tuple[RotationRun, SecretRef]:
        loaded = self._claimed.pop(run_id, None)
        if loaded is not None:
            return loaded
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            return run, s.get(SecretRef, run.secret_ref_id)

    def _persist(self, run: RotationRun, t: machine.Transition, *, pending_version: int | None = None,
                 finish: SecretRef | None = None, error: str | None = None, release: bool = False) -> None:
        """Write the transition with one fenced UPDATE. `run` is this worker's in-memory copy: while the
        lease is ours nobody else writes the row, and the fence makes a lost lease fail loudly."""
        now = self._now()
        steps = [*(run.steps or []), t.record]
        values: dict[str, Any] = {
            "state": t.state, "attempts": t.attempts, "steps": steps,
            "next_attempt_at": t.next_attempt_at if t.next_attempt_at else (now if not release else run.next_attempt_at),
            "claimed_until": None if release else now + self.lease, "error": error,
        }
        if t.state == machine.AWAITING:
            values["next_attempt_at"] = now + self.reminder_every  # the next reminder is due then
        if t.state in machine.TERMINAL:
            values["finished_at"] = now
        if pending_version is not None:
            values["pending_version"] = pending_version
        with self._session() as s:
            res = s.execute(sa.update(RotationRun).execution_options(synchronize_session=False)
                            .where(RotationRun.id == run.id, RotationRun.claimed_by == self.worker_id).values(**values))
            if res.rowcount != 1:
                raise LostLease()
            if pending_version is not None and not s.execute(select(SecretVersion.id).where(
                    SecretVersion.secret_ref_id == run.secret_ref_id, SecretVersion.version == pending_version)).scalar():
                s.add(SecretVersion(secret_ref_id=run.secret_ref_id, version=pending_version, stage="pending",
                                    created_at=now))
            if finish is not None:
                self._promote(s, run, finish, now)
        for key, value in values.items():
            setattr(run, key, value)

    def _promote(self, s, run: RotationRun, ref: SecretRef, now: dt.datetime) -> None:
        """pending -> current, current -> previous (valid for the overlap window), in the finish transaction."""
        values: dict[str, Any] = {"set_at": now,
                                  "next_due_at": schedule.next_due(ref.schedule, now, self.rng) if ref.schedule else None}
        if run.pending_version is not None:
            sv = sa.update(SecretVersion).execution_options(synchronize_session=False)
            s.execute(sv.where(SecretVersion.secret_ref_id == ref.id, SecretVersion.stage == "current",
                               SecretVersion.version != run.pending_version)
                      .values(stage="previous", expires_at=now + dt.timedelta(seconds=ref.overlap_seconds)))
            s.execute(sv.where(SecretVersion.secret_ref_id == ref.id, SecretVersion.version == run.pending_version)
                      .values(stage="current", expires_at=None))
            values["current_version"] = run.pending_version
        s.execute(sa.update(SecretRef).execution_options(synchronize_session=False)
                  .where(SecretRef.id == ref.id).values(**values))
        for key, value in values.items():
            setattr(ref, key, value)

    def execute(self, run_id: int) -> Outcome:
        """Run the claimed run's steps until it finishes, waits, or a step fails."""
        with self.pinned():
            run, ref = self._load(run_id)
            if run.claimed_by != self.worker_id:
                return Outcome(ref.external_id, "skipped", run_id, "claimed by another worker")
            previous_version = ref.current_version
            while True:
                step = machine.next_step(run.state)
                if step is None:
                    return self._release(run, ref)
                ctx = RotationContext(ref=view(ref), run_id=run_id, services=self.services, now=self._now(),
                                      pending_version=run.pending_version)
                started = self._now()
                rotator = None
                try:
                    rotator = self._rotator(run.rotator)
                    result = getattr(rotator, step)(ctx)
                except Exception as exc:  # noqa: BLE001 - each item fails alone, with a redacted reason
                    return self._fail(run, ref, rotator, ctx, step, started, exc)
                ended = self._now()
                if self.hook:
                    self.hook("before_persist", run_id, step)
                t = machine.succeeded(run.state, run.attempts, step, started, ended,
                                      awaiting=(step == "set" and result is False))
                try:
                    self._persist(run, t, pending_version=result if step == "create_pending" else None,
                                  finish=ref if step == "finish" else None,
                                  release=t.state in machine.TERMINAL or t.state == machine.AWAITING)
                except LostLease:
                    return Outcome(ref.external_id, "skipped", run_id, "lease lost to another worker")
                log.info("rotation step done", extra={"run_id": run_id, "secret_name": ref.external_id, "step": step,
                                                       "state": t.state})
                if self.hook:
                    self.hook("after_step", run_id, step)
                if t.state == machine.AWAITING:
                    self._notify("rotation.reminder", run_id, ref.external_id, rotator=run.rotator,
                                 detail="the new secret must be set at the target by an operator; "
                                        f"then run: govern rotate confirm {run_id}")
                    return Outcome(ref.external_id, machine.AWAITING, run_id, "waiting for an operator to confirm")
                if t.state == machine.FINISHED:
                    if t.recovered:
                        self._notify("rotation.recovered", run_id, ref.external_id, rotator=run.rotator,
                                     attempts=run.attempts)
                    return Outcome(ref.external_id, "finished", run_id,
                                   f"version {previous_version or '-'} -> "
                                   f"{run.pending_version if run.pending_version is not None else '-'}")

    def _fail(self, run, ref, rotator, ctx, step, started, exc) -> Outcome:
        error = describe_error(exc)
        t = machine.failed(run.state, run.attempts, step, started, self._now(), error, self.policy)
        if t.rollback and rotator is not None and hasattr(rotator, "rollback"):
            try:
                rotator.rollback(ctx)
            except Exception as rb_exc:  # noqa: BLE001
                t.record["rollback_error"] = describe_error(rb_exc)
        try:
            self._persist(run, t, error=error, release=True)
        except LostLease:
            return Outcome(ref.external_id, "skipped", run.id, "lease lost to another worker")
        log.warning("rotation step failed", extra={"run_id": run.id, "secret_name": ref.external_id, "step": step,
                                                    "error_text": error, "attempts": t.attempts})
        event = "rotation.parked" if t.parked else "rotation.failed"
        self._notify(event, run.id, ref.external_id, rotator=run.rotator, step=step, attempts=t.attempts,
                     error=error, next_attempt_at=t.next_attempt_at.isoformat() if t.next_attempt_at else None)
        return Outcome(ref.external_id, "parked" if t.parked else "retrying", run.id, f"{step} failed: {error}")

    def _release(self, run, ref) -> Outcome:
        with self._session() as s:
            s.execute(sa.update(RotationRun).execution_options(synchronize_session=False).where(RotationRun.id == run.id, RotationRun.claimed_by == self.worker_id)
                      .values(claimed_until=None))
        return Outcome(ref.external_id, run.state, run.id)

    # --- batch entry points -----------------------------------------------------------------------
    def _name(self, ref_id: int) -> str:
        with self._session() as s:
            return s.get(SecretRef, ref_id).external_id

    def rotate(self, ref_id: int, *, force: bool) -> Outcome:
        run_id, why = self.start(ref_id, force=force, claim=True)
        if run_id is None:
            return Outcome(self._name(ref_id), "skipped", None, why)
        return self.execute(run_id)

    def run_due(self) -> list[Outcome]:
        return [self.rotate(ref.id, force=False) for ref in self.due()]

    def drain(self, limit: int | None = None) -> list[Outcome]:
        """Claim and execute runnable runs (new, retrying, or abandoned by a dead worker) until none is left."""
        out: list[Outcome] = []
        while limit is None or len(out) < limit:
            run_id = self.claim()
            if run_id is None:
                break
            out.append(self.execute(run_id))
        return out

    # --- operator actions -------------------------------------------------------------------------
    def confirm(self, run_id: int, by: str) -> Outcome:
        now = self._now()
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            try:
                t = machine.confirmed(run.state, now, by)
            except ValueError:
                raise Conflict(f"run {run_id} is {run.state}, not awaiting confirmation") from None
            s.execute(sa.update(RotationRun).execution_options(synchronize_session=False).where(RotationRun.id == run_id, RotationRun.state == machine.AWAITING)
                      .values(state=t.state, steps=[*(run.steps or []), t.record], next_attempt_at=now,
                              claimed_until=None))
        if self.claim(only=run_id) is None:
            return Outcome(str(run_id), "set", run_id, "confirmed; a worker will test and finish it")
        return self.execute(run_id)

    def retry(self, run_id: int, by: str) -> Outcome:
        """Put a parked run back at the step that failed, with a fresh attempt budget, and run it."""
        self.requeue(run_id, by)
        if self.claim(only=run_id) is None:
            return Outcome(str(run_id), "retrying", run_id, "queued for a worker")
        return self.execute(run_id)

    def requeue(self, run_id: int, by: str) -> None:
        """Put a parked run back at the step that failed, for the next worker."""
        now = self._now()
        try:
            with self._session() as s:
                run = s.get(RotationRun, run_id)
                if run is None:
                    raise NotFound(f"no rotation run {run_id}")
                if run.state != machine.PARKED:
                    raise Conflict(f"run {run_id} is {run.state}; only parked runs can be retried")
                failed_step = next((r["step"] for r in reversed(run.steps or []) if r.get("outcome") == "failed"),
                                   "create_pending")
                state = machine.PENDING if failed_step == "test" else {v: k for k, v in machine.STEP_FOR_STATE.items()}[failed_step]
                rec = {"step": "retry", "by": by, "at": now.isoformat(), "outcome": "ok"}
                s.execute(sa.update(RotationRun).execution_options(synchronize_session=False).where(RotationRun.id == run_id).values(
                    state=state, attempts=0, next_attempt_at=now, claimed_until=None, finished_at=None,
                    steps=[*(run.steps or []), rec]))
        except IntegrityError:
            raise Conflict("another run of this secret is active") from None

    def acknowledge(self, run_id: int, by: str) -> None:
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            if run.state != machine.PARKED:
                raise Conflict(f"run {run_id} is {run.state}; only parked runs are acknowledged")
            rec = {"step": "acknowledge", "by": by, "at": self._now().isoformat(), "outcome": "ok"}
            run.steps = [*(run.steps or []), rec]

    # --- the worker's housekeeping ----------------------------------------------------------------
    def revoke_expired(self) -> list[Outcome]:
        """Revoke previous versions whose overlap window is over (idempotent at the target)."""
        now = self._now()
        out: list[Outcome] = []
        while True:
            with self._session() as s:
                stmt = (select(SecretVersion).where(SecretVersion.stage == "previous", SecretVersion.expires_at <= now)
                        .order_by(SecretVersion.id).limit(1))
                if claims.is_postgres(s):
                    stmt = stmt.with_for_update(skip_locked=True)
                sv = s.execute(stmt).scalar_one_or_none()
                if sv is None:
                    return out
                ref = s.get(SecretRef, sv.secret_ref_id)
                try:
                    rotator = self._rotator(ref.rotator or "static")
                    rotator.revoke_previous(RotationContext(ref=view(ref), run_id=None, services=self.services, now=now),
                                            sv.version)
                except Exception as exc:  # noqa: BLE001
                    err = describe_error(exc)
                    # Try again later rather than spin on it in this pass.
                    sv.expires_at = now + self.reminder_every
                    out.append(Outcome(ref.external_id, "failed", None, f"revoke of version {sv.version} failed: {err}"))
                    self._notify("rotation.failed", None, ref.external_id, step="revoke_previous", error=err)
                    continue
                sv.stage = "revoked"
                out.append(Outcome(ref.external_id, "revoked", None, f"version {sv.version}"))

    def send_reminders(self) -> int:
        """Re-send reminders for runs still waiting for an operator (once per reminder period)."""
        now = self._now()
        sent = 0
        with self._session() as s:
            rows = s.execute(select(RotationRun, SecretRef).join(SecretRef, SecretRef.id == RotationRun.secret_ref_id)
                             .where(RotationRun.state == machine.AWAITING, RotationRun.next_attempt_at <= now)).all()
            for run, ref in rows:
                res = s.execute(sa.update(RotationRun).execution_options(synchronize_session=False).where(RotationRun.id == run.id,
                                                             RotationRun.next_attempt_at == run.next_attempt_at)
                                .values(next_attempt_at=now + self.reminder_every))
                if res.rowcount == 1:
                    self._notify("rotation.reminder", run.id, ref.external_id, rotator=run.rotator,
                                 detail=f"still waiting for: govern rotate confirm {run.id}")
                    sent += 1
        return sent

    def tick(self) -> list[Outcome]:
        """One pass of the worker: start due rotations, run everything runnable, revoke, remind.

        Runs are first only created (cheap), then executed through claims, so that several workers
        share the work through SKIP LOCKED rather than walking the due list in lockstep."""
        out: list[Outcome] = []
        with self.pinned():
            skip: set[int] = set()
            while True:
                run_id, why, ref_id = self.start_next_due(skip)
                if ref_id is None:
                    break
                if run_id is None:
                    skip.add(ref_id)
                    if "cap" in why:
                        out.append(Outcome(self._name(ref_id), "skipped", None, why))
                    continue
                out.append(self.execute(run_id))
            out += self.drain()
            out += self.revoke_expired()
            self._retire_signing_keys()
            self.send_reminders()
        return out

    def _retire_signing_keys(self) -> None:
        """Signing keys have no stored versions to expire: the key set decides which retired keys are
        past the lifetime of the tokens they signed, on every worker pass (it is idempotent)."""
        hook = self.services.extras.get("signing_keys")
        if hook is not None and hasattr(hook, "retire_expired"):
            try:
                hook.retire_expired()
            except Exception as exc:  # noqa: BLE001
                log.warning("retiring signing keys failed: %s", type(exc).__name__)
