"""Operator actions on rotation runs: confirm a manual set, retry a parked run, acknowledge an alert.
A mixin of RotationService (govern.rotation.runner)."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from govern.errors import Conflict
from govern.ports import RotationRepository
from govern.rotation import machine
from govern.rotation.support import Outcome

log = logging.getLogger("govern.rotation")


class OperatorActions:
    # Supplied by RotationService (govern.rotation.runner), the one class this mixes into.
    repo: RotationRepository
    _now: Callable[[], dt.datetime]
    claim: Callable[..., int | None]
    execute: Callable[[int], Outcome]

    def confirm(self, run_id: int, by: str, *, run_now: bool = True) -> Outcome:
        """An operator says the manually set secret is in place. With `run_now`, test and finish it now;
        otherwise a worker does."""
        now = self._now()
        run, _ = self.repo.load(run_id)
        try:
            t = machine.confirmed(run.state, now, by)
        except ValueError:
            raise Conflict(f"run {run_id} is {run.state}, not awaiting confirmation") from None
        if not self.repo.confirm_run(run_id, t.state, t.record, now):
            raise Conflict(f"run {run_id} was confirmed meanwhile")
        if not run_now or self.claim(only=run_id) is None:
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
        run, _ = self.repo.load(run_id)
        if run.state != machine.PARKED:
            raise Conflict(f"run {run_id} is {run.state}; only parked runs can be retried")
        failed_step = next((r["step"] for r in reversed(run.steps) if r.get("outcome") == "failed"), "create_pending")
        rec = {"step": "retry", "by": by, "at": now.isoformat(), "outcome": "ok"}
        if not self.repo.requeue_run(run_id, machine.resume_state(failed_step), rec, now):
            raise Conflict(f"run {run_id} changed meanwhile")

    def acknowledge(self, run_id: int, by: str) -> None:
        run, _ = self.repo.load(run_id)
        if run.state != machine.PARKED:
            raise Conflict(f"run {run_id} is {run.state}; only parked runs are acknowledged")
        rec = {"step": "acknowledge", "by": by, "at": self._now().isoformat(), "outcome": "ok"}
        if not self.repo.append_step(run_id, rec, state=machine.PARKED):
            raise Conflict(f"run {run_id} changed meanwhile")
