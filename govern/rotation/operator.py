"""Operator actions on rotation runs: confirm a manual set, retry a parked run, acknowledge an alert.
A mixin of RotationService (govern.rotation.runner)."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from govern.errors import Conflict, NotFound
from govern.rotation import machine
from govern.rotation.support import Outcome, update
from govern.store.db import rows_matched
from govern.store.tables import RotationRun

log = logging.getLogger("govern.rotation")


class OperatorActions:
    # Supplied by RotationService (govern.rotation.runner), the one class this mixes into.
    _now: Callable[[], dt.datetime]
    _session: Callable[[], AbstractContextManager[Session]]
    claim: Callable[..., int | None]
    execute: Callable[[int], Outcome]

    def confirm(self, run_id: int, by: str, *, run_now: bool = True) -> Outcome:
        """An operator says the manually set secret is in place. With `run_now`, test and finish it now;
        otherwise a worker does."""
        now = self._now()
        with self._session() as s:
            run = s.get(RotationRun, run_id)
            if run is None:
                raise NotFound(f"no rotation run {run_id}")
            try:
                t = machine.confirmed(run.state, now, by)
            except ValueError:
                raise Conflict(f"run {run_id} is {run.state}, not awaiting confirmation") from None
            res = s.execute(update(RotationRun).where(col(RotationRun.id) == run_id, col(RotationRun.state) == machine.AWAITING)
                            .values(state=t.state, steps=[*(run.steps or []), t.record], next_attempt_at=now,
                                    claimed_until=None))
            if rows_matched(res) != 1:
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
        try:
            with self._session() as s:
                run = s.get(RotationRun, run_id)
                if run is None:
                    raise NotFound(f"no rotation run {run_id}")
                if run.state != machine.PARKED:
                    raise Conflict(f"run {run_id} is {run.state}; only parked runs can be retried")
                failed_step = next((r["step"] for r in reversed(run.steps or []) if r.get("outcome") == "failed"),
                                   "create_pending")
                state = machine.resume_state(failed_step)
                rec = {"step": "retry", "by": by, "at": now.isoformat(), "outcome": "ok"}
                res = s.execute(update(RotationRun).where(col(RotationRun.id) == run_id, col(RotationRun.state) == machine.PARKED)
                                .values(state=state, attempts=0, next_attempt_at=now, claimed_until=None,
                                        finished_at=None, steps=[*(run.steps or []), rec]))
                if rows_matched(res) != 1:
                    raise Conflict(f"run {run_id} changed meanwhile")
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

