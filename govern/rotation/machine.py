"""The four-step rotation state machine, pure: no database, no network, no clock of its own.

A rotation moves a secret through the staged versions of the AWS Secrets Manager / Vault model:

    created --create_pending--> pending --set--> set --test--> tested --finish--> finished
                                       \\--set (manual)--> awaiting_confirmation --confirm--> set

Each step is idempotent, so a worker that finds a run in state S (because the previous worker died
after S was persisted) simply runs the step for S again. A failed step keeps the state (so the retry
resumes at the same step), except a failed *test*, which goes back to `pending`: the runner rolls the
target back to the current secret first, so the current secret keeps working. After `max_attempts`
failures the run is parked (terminal) and an alert is sent.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# The states are domain values (govern.domain.rotation), shared with the repository that stores runs.
from govern.domain.rotation import (  # noqa: F401 - re-exported: govern.rotation.machine.PARKED etc.
    ACTIVE,
    AWAITING,
    CANCELLED,
    CREATED,
    FINISHED,
    PARKED,
    PENDING,
    RUNNABLE,
    SET,
    TERMINAL,
    TESTED,
)

STEP_FOR_STATE = {CREATED: "create_pending", PENDING: "set", SET: "test", TESTED: "finish"}
STATE_AFTER_STEP = {"create_pending": PENDING, "set": SET, "test": TESTED, "finish": FINISHED}
STEPS = ("create_pending", "set", "test", "finish")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base * 2**(attempt-1), capped; parked after max_attempts failures."""

    max_attempts: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int) -> float:
        return min(self.max_seconds, self.base_seconds * (2 ** max(0, attempts - 1)))


@dataclass
class Transition:
    """What the runner must persist after a step: the new state and the step record."""

    state: str
    attempts: int
    record: dict[str, Any]
    next_attempt_at: dt.datetime | None = None
    parked: bool = False
    recovered: bool = False  # finished after at least one failed attempt
    rollback: bool = False  # the target must be set back to the current secret


def next_step(state: str) -> str | None:
    """The step to run in `state`, or None when the run waits (confirmation) or is over."""
    return STEP_FOR_STATE.get(state)


def _record(step: str, started: dt.datetime, ended: dt.datetime, outcome: str, **extra: Any) -> dict[str, Any]:
    rec = {"step": step, "started_at": started.isoformat(), "ended_at": ended.isoformat(),
           "duration_ms": round((ended - started).total_seconds() * 1000, 3), "outcome": outcome}
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


def succeeded(state: str, attempts: int, step: str, started: dt.datetime, ended: dt.datetime,
              *, awaiting: bool = False, detail: str | None = None) -> Transition:
    if STEP_FOR_STATE.get(state) != step:
        raise ValueError(f"step {step} does not belong to state {state}")
    new_state = AWAITING if (step == "set" and awaiting) else STATE_AFTER_STEP[step]
    return Transition(state=new_state, attempts=attempts,
                      record=_record(step, started, ended, "awaiting" if awaiting else "ok", detail=detail),
                      recovered=new_state == FINISHED and attempts > 0)


def failed(state: str, attempts: int, step: str, started: dt.datetime, ended: dt.datetime,
           error: str, policy: RetryPolicy) -> Transition:
    """A step raised. `error` must already be redacted (the runner never passes exception text from a secret)."""
    attempts += 1
    is_test = step == "test"
    record = _record(step, started, ended, "failed", error=error, attempt=attempts)
    back_to = PENDING if is_test else state
    if attempts >= policy.max_attempts:
        return Transition(state=PARKED, attempts=attempts, record=record, parked=True, rollback=is_test)
    return Transition(state=back_to, attempts=attempts, record=record, rollback=is_test,
                      next_attempt_at=ended + dt.timedelta(seconds=policy.delay(attempts)))


def confirmed(state: str, at: dt.datetime, by: str) -> Transition:
    """An operator confirmed that a manually set secret is in place at the target."""
    if state != AWAITING:
        raise ValueError(f"a run in state {state} is not awaiting confirmation")
    return Transition(state=SET, attempts=0, record=_record("confirm", at, at, "ok", by=by))


def resume_state(failed_step: str) -> str:
    """Where a parked run restarts: at the step that failed (a failed test restarts at `set`)."""
    if failed_step == "test":
        return PENDING
    for state, step in STEP_FOR_STATE.items():
        if step == failed_step:
            return state
    return CREATED
