"""The rotation runner: drives govern.rotation.machine over stored runs, one claimed run at a time.

The loop: claim a run (govern.rotation.claims), run the step of its state (govern.rotation.steps), persist
the transition with one fenced write (the repository's `save_step`, `WHERE claimed_by = me`), repeat until
the run finishes, waits or fails. Between steps the state is in the database, which is what makes every step
resumable by any worker; a worker whose lease ran out and was taken over can never overwrite the new owner's
progress. The runner sees the database only through govern.ports.RotationRepository.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Callable

from govern.domain.rotation import Finish, Promotion, RunChange, RunRecord, SecretRefView
from govern.ports import Notifier, RotationRepository
from govern.rotation import machine, schedule, steps
from govern.rotation.claims import Claiming
from govern.rotation.collaborators import RotationCollaborators
from govern.rotation.housekeeping import Housekeeping
from govern.rotation.operator import OperatorActions
from govern.rotation.rotators import RotationContext, load_rotator
from govern.rotation.rotators.base import staging_path
from govern.rotation.support import (  # noqa: F401 - re-exported for callers
    LostLease,
    Outcome,
    default_worker_id,
    describe_error,
)

log = logging.getLogger("govern.rotation")


@dataclass
class RotationService(Claiming, OperatorActions, Housekeeping):
    collaborators: RotationCollaborators  # built from the composition root (govern.rotation.wiring)
    worker_id: str = field(default_factory=default_worker_id)
    policy: machine.RetryPolicy = field(default_factory=machine.RetryPolicy)
    lease: dt.timedelta = dt.timedelta(seconds=120)
    reminder_every: dt.timedelta = dt.timedelta(hours=24)
    rng: Any = None  # random.Random-like, for jitter; None: no jitter
    notifier: Notifier | None = None
    # Test seam: called as hook(point, run_id, step); "after_step" fires once a step is persisted and
    # "before_persist" after the target was touched but before the state was written.
    hook: Callable[[str, int, str], None] | None = None
    # The runs and secrets; by default a new one from collaborators.repositories (govern.store.rotation_runs).
    repository: RotationRepository | None = None
    repo: RotationRepository = field(init=False)
    _rotators: dict[str, Any] = field(default_factory=dict)
    _claimed: dict[int, tuple[RunRecord, SecretRefView]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.repository is not None:
            self.repo = self.repository
        elif self.collaborators.repositories is not None:
            self.repo = self.collaborators.repositories()
        else:
            raise TypeError("services.rotation_repository is not wired (govern.bootstrap.build_services)")
        if self.notifier is None:
            # govern's one notifier (govern.notify), wired by the composition root.
            self.notifier = self.collaborators.notifier

    # --- helpers ----------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return self.collaborators.clock.now()

    def pinned(self):
        """One database connection for a whole pass (see the repository's `pinned`)."""
        return self.repo.pinned()

    def _rotator(self, name: str):
        return load_rotator(name, self._rotators)

    def _notify(self, event: str, run_id: int | None, secret: str, **payload: Any) -> None:
        if self.notifier is None:  # __post_init__ always sets one
            return
        try:
            self.notifier.notify(event, {"run_id": run_id, "secret_ref": secret, "at": self._now().isoformat(), **payload})
        except Exception as exc:  # noqa: BLE001 - notifications never break the run
            log.warning("notifier failed: %s", type(exc).__name__)

    # --- executing --------------------------------------------------------------------------------
    def _persist(self, run: RunRecord, t: machine.Transition, *, pending_version: int | None = None,
                 finish: Finish | None = None, error: str | None = None, release: bool = False) -> None:
        """Write the transition with one fenced UPDATE. `run` is this worker's in-memory copy: while the
        lease is ours nobody else writes the row, and the fence makes a lost lease fail loudly."""
        now = self._now()
        next_attempt_at = t.next_attempt_at if t.next_attempt_at else (now if not release else run.next_attempt_at)
        if t.state == machine.AWAITING:
            next_attempt_at = now + self.reminder_every  # the next reminder is due then
        change = RunChange(state=t.state, attempts=t.attempts, steps=[*run.steps, t.record],
                           next_attempt_at=next_attempt_at, claimed_until=None if release else now + self.lease,
                           error=error, finished_at=now if t.state in machine.TERMINAL else None,
                           pending_version=pending_version)
        if not self.repo.save_step(run.id, self.worker_id, change, finish):
            raise LostLease()
        change.applied_to(run)

    def _finish(self, ref: SecretRefView, promotion: Promotion) -> Finish:
        now = self._now()
        return Finish(ref_id=ref.id, set_at=now, overlap_seconds=ref.overlap_seconds, promotion=promotion,
                      next_due_at=schedule.next_due(ref.schedule, now, self.rng) if ref.schedule else None)

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
                ctx = RotationContext(ref=ref, run_id=run_id, collaborators=self.collaborators, now=self._now(),
                                      pending_version=run.pending_version)
                started = self._now()
                rotator = None
                try:
                    rotator = self._rotator(run.rotator)
                    done = steps.STEP_OF_STATE[run.state](rotator, ctx, self.repo)
                except Exception as exc:  # noqa: BLE001 - each item fails alone, with a redacted reason
                    return self._fail(run, ref, rotator, ctx, step, started, exc)
                if self.hook:
                    self.hook("before_persist", run_id, step)
                t = machine.succeeded(run.state, run.attempts, step, started, self._now(), awaiting=done.awaiting)
                promoted = done.promotion
                try:
                    self._persist(run, t, pending_version=done.pending_version,
                                  finish=self._finish(ref, promoted or Promotion(None)) if step == "finish" else None,
                                  release=t.state in machine.TERMINAL or t.state == machine.AWAITING)
                except LostLease:
                    return Outcome(ref.external_id, "skipped", run_id, "lease lost to another worker")
                if promoted is not None and promoted.version is not None:
                    ref = replace(ref, current_version=promoted.version)
                    steps.drop_staged(ctx)
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

    def _fail(self, run: RunRecord, ref: SecretRefView, rotator: Any, ctx: RotationContext, step: str,
              started: dt.datetime, exc: Exception) -> Outcome:
        error = describe_error(exc)
        t = machine.failed(run.state, run.attempts, step, started, self._now(), error, self.policy)
        if t.rollback:
            try:
                steps.roll_back(rotator, ctx)
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

    def _release(self, run: RunRecord, ref: SecretRefView) -> Outcome:
        self.repo.release(run.id, self.worker_id)
        return Outcome(ref.external_id, run.state, run.id)

    # --- batch entry points -----------------------------------------------------------------------
    def rotate(self, ref_id: int, *, force: bool) -> Outcome:
        """Start a run for the secret, or resume its active run when no live worker holds it (its worker
        died and the lease ran out, or it waits for a retry). By name (`force`) a retry's backoff is not
        waited for: the operator asked for this rotation now."""
        run_id, why = self.start(ref_id, force=force, claim=True)
        if run_id is not None:
            return self.execute(run_id)
        active = self.repo.active_run(ref_id)
        if active is None:
            return Outcome(self.repo.ref_name(ref_id), "skipped", None, why)
        if self.claim(only=active.id, ignore_backoff=force) is not None:
            log.info("resuming rotation run", extra={"run_id": active.id, "state": active.state})
            outcome = self.execute(active.id)
            outcome.detail = f"resumed at {machine.next_step(active.state)}" + (
                f"; {outcome.detail}" if outcome.detail else "")
            return outcome
        if active.state == machine.AWAITING:
            why = f"run {active.id} waits for an operator: govern rotate confirm {active.id}"
        elif active.claimed_until is not None and active.claimed_until > self._now():
            why = f"run {active.id} is being run by {active.claimed_by} (lease until {active.claimed_until.isoformat()})"
        else:
            why = f"run {active.id} is already active (next attempt at {active.next_attempt_at})"
        return Outcome(self.repo.ref_name(ref_id), "skipped", active.id, why)

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
                        out.append(Outcome(self.repo.ref_name(ref_id), "skipped", None, why))
                    continue
                out.append(self.execute(run_id))
            out += self.drain()
            out += self.revoke_expired()
            self.send_reminders()
        return out
