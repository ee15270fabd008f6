"""Finding, starting and claiming rotation runs, so that any number of workers cooperate without a coordinator.
A mixin of RotationService (govern.rotation.runner).

The repository (govern.ports.RotationRepository) makes each of these one conditional write: a due date
taken (`next_due_at` cleared while still due) starts exactly one run per due secret, and a lease
(`claimed_until`) claims a run; the next worker resumes a run whose worker died once its lease ran out.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from govern.domain.rotation import RunRecord, SecretRefView, Started
from govern.errors import GovernError
from govern.ports import RotationRepository
from govern.rotation import machine
from govern.rotation.support import Outcome, describe_error

RUNNABLE = machine.RUNNABLE


class Claiming:
    # Supplied by RotationService (govern.rotation.runner), the one class this mixes into.
    repo: RotationRepository
    worker_id: str
    lease: dt.timedelta
    _claimed: dict[int, tuple[RunRecord, SecretRefView]]
    _now: Callable[[], dt.datetime]
    _rotator: Callable[[str], Any]

    def find_ref(self, name: str) -> SecretRefView:
        return self.repo.find_ref(name)

    def due(self, now: dt.datetime | None = None) -> list[SecretRefView]:
        return self.repo.due_refs(now or self._now())

    def plan(self, refs: list[SecretRefView]) -> list[Outcome]:
        """Dry run: what would happen per item. Reads only."""
        out = []
        for ref in refs:
            if not ref.rotator:
                out.append(Outcome(ref.external_id, "skipped", detail="no rotator configured (rotated by hand)"))
                continue
            try:
                self._rotator(ref.rotator)
            except GovernError as exc:
                out.append(Outcome(ref.external_id, "failed", detail=describe_error(exc)))
                continue
            active = self.repo.active_run(ref.id)
            if active is not None:
                free = active.claimed_until is None or active.claimed_until <= self._now()
                if free and active.state in RUNNABLE:  # what `rotate NAME --commit` would do
                    out.append(Outcome(ref.external_id, "would_resume", active.id,
                                       f"run {active.id} at {machine.next_step(active.state)}; no worker holds it"))
                else:
                    out.append(Outcome(ref.external_id, "skipped", active.id, f"run {active.id} is already active"))
                continue
            out.append(Outcome(ref.external_id, "would_rotate",
                               detail=f"rotator {ref.rotator}, system {self.repo.system_key(ref)}"))
        return out

    def start(self, ref_id: int, *, force: bool = False, claim: bool = False) -> tuple[int | None, str]:
        """Create the run for one secret. Returns (run_id, "") or (None, why not).

        Not forced, the secret must still be due: the conditional UPDATE of next_due_at is the claim on
        the schedule, so of many workers that saw it due exactly one creates the run. With `claim`, the
        new run is leased to this worker in the same transaction."""
        now = self._now()
        started = self.repo.create_run(ref_id, now, due_only=not force, worker=self.worker_id if claim else None,
                                       lease_until=now + self.lease if claim else None)
        return self._started(started, claim)

    def start_next_due(self, skip: set[int]) -> tuple[int | None, str, int | None]:
        """Pick any due secret no other worker is starting (SKIP LOCKED), create its run and claim it.
        Returns (run_id, why not, secret id); (None, "", None) when nothing is due."""
        now = self._now()
        started = self.repo.create_next_due(now, skip, self.worker_id, now + self.lease)
        if started is None:
            return None, "", None
        run_id, why = self._started(started, True)
        return run_id, why, started.ref.id if started.ref is not None else None

    def _started(self, started: Started, claim: bool) -> tuple[int | None, str]:
        if started.run is None:
            return None, started.why
        if claim and started.ref is not None:
            self._claimed[started.run.id] = (started.run, started.ref)
        return started.run.id, ""

    def claim(self, only: int | None = None, *, ignore_backoff: bool = False) -> int | None:
        """Claim a run and read it (with its secret) in the same transaction, for `execute`."""
        now = self._now()
        claimed = self.repo.claim(self.worker_id, now, now + self.lease, only=only, ignore_backoff=ignore_backoff)
        if claimed is None:
            return None
        run, ref = claimed
        self._claimed[run.id] = (run, ref)
        return run.id

    def _load(self, run_id: int) -> tuple[RunRecord, SecretRefView]:
        loaded = self._claimed.pop(run_id, None)
        return loaded if loaded is not None else self.repo.load(run_id)
