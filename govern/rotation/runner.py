"""The rotation runner: drives govern.rotation.machine over persisted `rotation_run` rows.

Every transition is written with a fenced UPDATE (`WHERE claimed_by = me`), so a worker whose lease ran
out and was taken over can never overwrite the new owner's progress. Between steps the state is in the
database, which is what makes every step resumable by any worker.
"""
from __future__ import annotations

import datetime as dt
import logging
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import Session as SQLModelSession
from sqlmodel import col, select

from govern.errors import GovernError, NotFound, SecretNotFound
from govern.rotation import claims, machine, schedule
from govern.rotation.housekeeping import Housekeeping
from govern.rotation.operator import OperatorActions
from govern.rotation.rotators import RotationContext, load_rotator
from govern.rotation.rotators.base import staging_path
from govern.rotation.support import (  # noqa: F401 - re-exported for callers
    LostLease,
    Outcome,
    default_worker_id,
    describe_error,
    system_key,
    update,
    view,
)
from govern.store.db import row_id, rows_matched, session_scope
from govern.store.rotation_tables import RotationSystemCap
from govern.store.tables import RotationRun, SecretRef, SecretVersion
from govern.notify import build_notifier
from govern.ports import Notifier

log = logging.getLogger("govern.rotation")


@dataclass(frozen=True)
class Promotion:
    """What the finish step did in the store: the version the staged secret became at the secret's own
    path, and the superseded previous versions it revoked at the target."""

    version: int | None
    retired: tuple[int, ...]


@dataclass
class RotationService(OperatorActions, Housekeeping):
    services: Any
    worker_id: str = field(default_factory=default_worker_id)
    policy: machine.RetryPolicy = field(default_factory=machine.RetryPolicy)
    lease: dt.timedelta = dt.timedelta(seconds=120)
    reminder_every: dt.timedelta = dt.timedelta(hours=24)
    rng: Any = None  # random.Random-like, for jitter; None: no jitter
    notifier: Notifier | None = None
    # Test seam: called as hook(point, run_id, step); "after_step" fires once a step is persisted and
    # "before_persist" after the target was touched but before the state was written.
    hook: Callable[[str, int, str], None] | None = None
    _rotators: dict[str, Any] = field(default_factory=dict)
    _pinned_sessions: Any = None
    _claimed: dict[int, tuple[Any, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if self.notifier is None:
            # govern's one notifier (govern.notify), wired by the composition root.
            self.notifier = self.services.notifier
        if self.notifier is None:
            self.notifier = build_notifier(self.services.settings, self.services.clock)

    # --- helpers ----------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return self.services.clock.now()

    def _session(self) -> AbstractContextManager[Session]:
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
        if self.notifier is None:  # __post_init__ always sets one
            return
        try:
            self.notifier.notify(event, {"run_id": run_id, "secret_ref": secret, "at": self._now().isoformat(), **payload})
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
            active = select(col(RotationRun.secret_ref_id)).where(col(RotationRun.state).in_(machine.ACTIVE))
            # Secrets rotated by hand (a schedule, no rotator) are listed too: the report says so.
            return list(s.execute(select(SecretRef).where(
                sa.or_(col(SecretRef.rotator).is_not(None), col(SecretRef.schedule).is_not(None)),
                col(SecretRef.next_due_at).is_not(None), col(SecretRef.next_due_at) <= now,
                col(SecretRef.id).not_in(active)).order_by(col(SecretRef.next_due_at), col(SecretRef.id))).scalars())

    def plan(self, refs: list[SecretRef]) -> list[Outcome]:
        """Dry run: what would happen per item. Reads only."""
        out = []
        with self._session() as s:
            for ref in refs:
                if not ref.rotator:
                    out.append(Outcome(ref.external_id, "skipped", detail="no rotator configured (rotated by hand)"))
                    continue
                try:
                    self._rotator(ref.rotator)
                except GovernError as exc:
                    out.append(Outcome(ref.external_id, "failed", detail=describe_error(exc)))
                    continue
                active = s.execute(select(RotationRun).where(RotationRun.secret_ref_id == ref.id,
                                                             col(RotationRun.state).in_(machine.ACTIVE))).scalar()
                if active is not None:
                    free = active.claimed_until is None or _aware(active.claimed_until) <= self._now()
                    if free and active.state in claims.RUNNABLE:  # what `rotate NAME --commit` would do
                        out.append(Outcome(ref.external_id, "would_resume", active.id,
                                           f"run {active.id} at {machine.next_step(active.state)}; no worker holds it"))
                    else:
                        out.append(Outcome(ref.external_id, "skipped", active.id, f"run {active.id} is already active"))
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
                    return None, "no rotator configured (rotated by hand)"
                return self._create_run(s, ref, now, due_only=not force, claim=claim)
        except IntegrityError:
            return None, "another run is already active"

    def start_next_due(self, skip: set[int]) -> tuple[int | None, str, int | None]:
        """Pick any due secret no other worker is starting (SKIP LOCKED), create its run and claim it.
        Returns (run_id, why not, secret id); (None, "", None) when nothing is due."""
        now = self._now()
        ref: SecretRef | None = None
        try:
            with self._session() as s:
                stmt = (select(SecretRef).where(col(SecretRef.rotator).is_not(None), col(SecretRef.next_due_at).is_not(None),
                                                col(SecretRef.next_due_at) <= now)
                        .order_by(col(SecretRef.next_due_at), col(SecretRef.id)).limit(1))
                if skip:
                    stmt = stmt.where(col(SecretRef.id).not_in(skip))
                if claims.is_postgres(s):
                    stmt = stmt.with_for_update(skip_locked=True)
                ref = s.execute(stmt).scalar_one_or_none()
                if ref is None:
                    return None, "", None
                run_id, why = self._create_run(s, ref, now, due_only=True, claim=True)
                return run_id, why, ref.id
        except IntegrityError:
            return None, "another run is already active", ref.id if ref is not None else None

    def _create_run(self, s, ref: SecretRef, now: dt.datetime, *, due_only: bool, claim: bool) -> tuple[int | None, str]:
        if not ref.rotator:
            return None, "no rotator configured (rotated by hand)"
        cond: list[sa.ColumnElement[bool]] = [col(SecretRef.id) == ref.id]
        if due_only:
            cond += [col(SecretRef.next_due_at).is_not(None), col(SecretRef.next_due_at) <= now]
        # First the row (serialises workers per secret, and takes SQLite's write lock), then the system.
        if rows_matched(s.execute(update(SecretRef)
                        .where(*cond).values(next_due_at=None))) != 1:
            s.rollback()
            return None, "not due (already taken)"
        key = system_key(s, ref)
        claims.lock_system(s, key)
        # Not forced, the unique index is the guard (IntegrityError); forced, say which run.
        active = not due_only and s.execute(select(RotationRun.id).where(
            col(RotationRun.secret_ref_id) == ref.id, col(RotationRun.state).in_(machine.ACTIVE))).scalar()
        if active:
            s.rollback()
            return None, f"run {active} is already active"
        busy, cap = s.execute(select(
            select(sa.func.count()).select_from(RotationRun).where(
                col(RotationRun.system_key) == key, col(RotationRun.state).in_(machine.ACTIVE)).scalar_subquery(),
            select(RotationSystemCap.max_concurrent).where(RotationSystemCap.system_key == key).scalar_subquery(),
        )).one()
        cap = cap or 1
        if busy >= cap:
            s.rollback()  # keeps next_due_at: it is started when the system is free
            return None, f"system {key} is at its concurrency cap ({cap})"
        run = RotationRun(secret_ref_id=row_id(ref), rotator=ref.rotator, state=machine.CREATED, system_key=key,
                          next_attempt_at=now, started_at=now, steps=[])
        if claim:
            run.claimed_by, run.claimed_until = self.worker_id, now + self.lease
        s.add(run)
        s.flush()
        if claim:
            self._claimed[row_id(run)] = (run, ref)
        return run.id, ""

    # --- executing --------------------------------------------------------------------------------
    def claim(self, only: int | None = None, *, ignore_backoff: bool = False) -> int | None:
        """Claim a run and read it (with its secret) in the same transaction, for `execute`."""
        with self._session() as s:
            run_id = claims.claim_next(s, self.worker_id, self._now(), self.lease, only=only,
                                       ignore_backoff=ignore_backoff)
            if run_id is not None:
                s.expire_all()
                run = s.get_one(RotationRun, run_id)
                self._claimed[run_id] = (run, s.get_one(SecretRef, run.secret_ref_id))
            return run_id

    def _load(self, run_id: int) -> tuple[RotationRun, SecretRef]:
        loaded = self._claimed.pop(run_id, None)
        if loaded is not None:
            return loaded
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            return run, s.get_one(SecretRef, run.secret_ref_id)

    def _persist(self, run: RotationRun, t: machine.Transition, *, pending_version: int | None = None,
                 finish: SecretRef | None = None, promoted: Promotion | None = None, error: str | None = None,
                 release: bool = False) -> None:
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
            res = s.execute(update(RotationRun)
                            .where(col(RotationRun.id) == run.id, col(RotationRun.claimed_by) == self.worker_id).values(**values))
            if rows_matched(res) != 1:
                raise LostLease()
            # The pending version is staged apart (rotators.base.staging_path): it gets a secret_version row
            # only when it is promoted to the secret's own path, so the rows describe that path truly.
            if finish is not None:
                self._promote(s, run, finish, now, promoted or Promotion(None, ()))
        for key, value in values.items():
            setattr(run, key, value)

    def _promote(self, s, run: RotationRun, ref: SecretRef, now: dt.datetime, promoted: Promotion) -> None:
        """promoted -> current, current -> previous (valid for the overlap window), and every older previous
        -> revoked (a target keeps one previous secret: the set of this run replaced it), in the finish
        transaction. So only versions that still work are `previous`, however many rotations overlap."""
        values: dict[str, Any] = {"set_at": now,
                                  "next_due_at": schedule.next_due(ref.schedule, now, self.rng) if ref.schedule else None}
        if promoted.version is not None:
            sv = update(SecretVersion)
            older = sv.where(col(SecretVersion.secret_ref_id) == ref.id, col(SecretVersion.stage) == "previous",
                             col(SecretVersion.version) != promoted.version)
            # Revoked at the target by the finish step; one whose revocation failed expires now instead,
            # so no reader tries it and the worker's revoke_expired retries it.
            s.execute(older.where(col(SecretVersion.version).in_(promoted.retired)).values(stage="revoked"))
            s.execute(older.where(col(SecretVersion.version).not_in(promoted.retired)).values(expires_at=now))
            s.execute(sv.where(col(SecretVersion.secret_ref_id) == ref.id, col(SecretVersion.stage) == "current",
                               col(SecretVersion.version) != promoted.version)
                      .values(stage="previous", expires_at=now + dt.timedelta(seconds=ref.overlap_seconds)))
            if s.execute(sv.where(col(SecretVersion.secret_ref_id) == ref.id, col(SecretVersion.version) == promoted.version)
                         .values(stage="current", expires_at=None)).rowcount == 0:
                s.add(SecretVersion(secret_ref_id=row_id(ref), version=promoted.version, stage="current", created_at=now))
            values["current_version"] = promoted.version
        s.execute(update(SecretRef)
                  .where(col(SecretRef.id) == ref.id).values(**values))
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
                promoted = None
                try:
                    rotator = self._rotator(run.rotator)
                    result = getattr(rotator, step)(ctx)
                    if step == "set" and result is not False and getattr(rotator, "single_secret", False):
                        # The target now accepts only the new secret: the secret's own path follows at once.
                        self._copy_staged(ctx)
                    if step == "finish":
                        promoted = self._promote_in_store(rotator, ctx)
                except Exception as exc:  # noqa: BLE001 - each item fails alone, with a redacted reason
                    return self._fail(run, ref, rotator, ctx, step, started, exc)
                ended = self._now()
                if self.hook:
                    self.hook("before_persist", run_id, step)
                t = machine.succeeded(run.state, run.attempts, step, started, ended,
                                      awaiting=(step == "set" and result is False))
                try:
                    self._persist(run, t, pending_version=result if step == "create_pending" else None,
                                  finish=ref if step == "finish" else None, promoted=promoted,
                                  release=t.state in machine.TERMINAL or t.state == machine.AWAITING)
                except LostLease:
                    return Outcome(ref.external_id, "skipped", run_id, "lease lost to another worker")
                if promoted is not None and promoted.version is not None:
                    self._drop_staged(ctx)
                log.info("rotation step done", extra={"run_id": run_id, "secret_name": ref.external_id, "step": step,
                                                       "state": t.state})
                if self.hook:
                    self.hook("after_step", run_id, step)
                if t.state == machine.AWAITING:
                    self._notify("rotation.reminder", run_id, ref.external_id, rotator=run.rotator,
                                 staged_path=staging_path(ref.path),
                                 detail="the new secret (staged in the secret store at "
                                        f"{staging_path(ref.path)}) must be set at the target by an operator; "
                                        f"then run: govern rotate confirm {run_id}")
                    return Outcome(ref.external_id, machine.AWAITING, run_id, "waiting for an operator to confirm")
                if t.state == machine.FINISHED:
                    if t.recovered:
                        self._notify("rotation.recovered", run_id, ref.external_id, rotator=run.rotator,
                                     attempts=run.attempts)
                    new_version = promoted.version if promoted is not None else None
                    return Outcome(ref.external_id, "finished", run_id,
                                   f"version {previous_version or '-'} -> "
                                   f"{new_version if new_version is not None else '-'}")

    def _promote_in_store(self, rotator, ctx: RotationContext) -> Promotion:
        """The store half of `finish`: copy the staged secret to the secret's own path (it has been set and
        tested, so from now on the latest version there works), and revoke at the target the previous
        versions it supersedes. Idempotent: a copy a crashed attempt already made is found and reused."""
        if ctx.pending_version is None:
            return Promotion(None, ())
        version = self._copy_staged(ctx)
        with self._session() as s:
            superseded = list(s.execute(select(SecretVersion.version).where(
                SecretVersion.secret_ref_id == ctx.ref.id, SecretVersion.stage == "previous",
                SecretVersion.version != version)).scalars())
        retired = []
        for old in superseded:
            try:
                rotator.revoke_previous(ctx, old)
                retired.append(old)
            except Exception as exc:  # noqa: BLE001 - retried by revoke_expired; the rotation still finishes
                log.warning("revoking a superseded version failed", extra={
                    "secret_name": ctx.ref.external_id, "version": old, "error_text": describe_error(exc)})
        return Promotion(version, tuple(retired))

    def _copy_staged(self, ctx: RotationContext) -> int:
        """Write the staged secret as the newest version at the secret's own path (check-and-set), unless
        it already is (a crashed attempt copied it). Returns that version."""
        store, path = ctx.store, ctx.ref.path
        value = ctx.pending()
        try:
            latest = store.metadata(path).version
        except SecretNotFound:
            latest = 0
        if latest and latest != ctx.ref.current_version and store.get(path, version=latest).reveal() == value.reveal():
            return latest
        return store.put(path, value, cas=latest).version

    def _restore_current(self, ctx: RotationContext) -> None:
        """After a rollback: if the secret's own path was already following a single-secret target, write
        the current secret (the one the target is back on) as its newest version again."""
        current = ctx.current()
        if current is None:
            return
        try:
            latest = ctx.store.metadata(ctx.ref.path).version
        except SecretNotFound:
            return
        if latest != ctx.ref.current_version and ctx.store.get(ctx.ref.path, version=latest).reveal() != current.reveal():
            ctx.store.put(ctx.ref.path, current, cas=latest)

    def _drop_staged(self, ctx: RotationContext) -> None:
        """The staged copy is not needed once promoted (a copy left by a crash is recognised as the current
        secret by the next create_pending, and replaced)."""
        try:
            ctx.store.delete(staging_path(ctx.ref.path))
        except Exception as exc:  # noqa: BLE001
            log.warning("the staged secret was not deleted", extra={"secret_name": ctx.ref.external_id,
                                                                    "exc_type": type(exc).__name__})

    def _fail(self, run, ref, rotator, ctx, step, started, exc) -> Outcome:
        error = describe_error(exc)
        t = machine.failed(run.state, run.attempts, step, started, self._now(), error, self.policy)
        if t.rollback and rotator is not None and hasattr(rotator, "rollback"):
            try:
                rotator.rollback(ctx)
                if getattr(rotator, "single_secret", False):
                    self._restore_current(ctx)
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
            s.execute(update(RotationRun).where(col(RotationRun.id) == run.id, col(RotationRun.claimed_by) == self.worker_id)
                      .values(claimed_until=None))
        return Outcome(ref.external_id, run.state, run.id)

    # --- batch entry points -----------------------------------------------------------------------
    def _name(self, ref_id: int) -> str:
        with self._session() as s:
            return s.get_one(SecretRef, ref_id).external_id

    def rotate(self, ref_id: int, *, force: bool) -> Outcome:
        """Start a run for the secret, or resume its active run when no live worker holds it (its worker
        died and the lease ran out, or it waits for a retry). By name (`force`) a retry's backoff is not
        waited for: the operator asked for this rotation now."""
        run_id, why = self.start(ref_id, force=force, claim=True)
        if run_id is not None:
            return self.execute(run_id)
        with self._session() as s:
            active = s.execute(select(RotationRun).where(RotationRun.secret_ref_id == ref_id,
                                                         col(RotationRun.state).in_(machine.ACTIVE))).scalar_one_or_none()
        if active is None:
            return Outcome(self._name(ref_id), "skipped", None, why)
        if self.claim(only=active.id, ignore_backoff=force) is not None:
            log.info("resuming rotation run", extra={"run_id": active.id, "state": active.state})
            outcome = self.execute(row_id(active))
            outcome.detail = f"resumed at {machine.next_step(active.state)}" + (
                f"; {outcome.detail}" if outcome.detail else "")
            return outcome
        if active.state == machine.AWAITING:
            why = f"run {active.id} waits for an operator: govern rotate confirm {active.id}"
        elif active.claimed_until is not None and _aware(active.claimed_until) > self._now():
            why = (f"run {active.id} is being run by {active.claimed_by} (lease until "
                   f"{_aware(active.claimed_until).isoformat()})")
        else:
            why = f"run {active.id} is already active (next attempt at {active.next_attempt_at})"
        return Outcome(self._name(ref_id), "skipped", active.id, why)

    def run_due(self) -> list[Outcome]:
        return [self.rotate(row_id(ref), force=False) for ref in self.due()]

    def drain(self, limit: int | None = None) -> list[Outcome]:
        """Claim and execute runnable runs (new, retrying, or abandoned by a dead worker) until none is left."""
        out: list[Outcome] = []
        while limit is None or len(out) < limit:
            run_id = self.claim()
            if run_id is None:
                break
            out.append(self.execute(run_id))
        return out

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
            self.send_reminders()
        return out


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
