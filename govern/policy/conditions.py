"""Access conditions at decision time (issue #21; docs/access-conditions.md).

Of the permission sets that permit a request, those whose conditions hold (or that have none) go on permitting.
If none is left, the conditions that failed are handed to Cedar as `context.conditions` (one Bool per condition)
and `050_access_conditions.cedar` forbids, naming each one: `condition:time_window`,
`condition:max_requests_per_minute`, `condition:source_cidrs`.

The request rate is counted per (integration user, permission set) in fixed one-minute windows of govern's clock,
in this process's memory: with several processes each counts its own share (docs/access-conditions.md says so).
A request is counted only under a set whose time window and source range hold.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

from govern.domain.access_rules import ip_in_ranges
from govern.domain.conditions import RATE, SOURCE, TIME_WINDOW

CONDITION_PREFIX = "condition:"
CONDITION_RULES = {"time_window": TIME_WINDOW, "max_requests_per_minute": RATE, "source_cidrs": SOURCE}
CONDITIONS_REASON = "an access condition of the permission sets does not hold"


class ConditionEvaluator:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._lock = threading.Lock()

    def _count(self, user: str, pset: str, minute: int) -> int:
        with self._lock:
            if len(self._counts) > 10_000:  # drop past minutes
                for key in [k for k in self._counts if k[2] < minute]:
                    del self._counts[key]
            key = (user, pset, minute)
            self._counts[key] = count = self._counts.get(key, 0) + 1
            return count

    def evaluate(self, permitting: Sequence[Any], user: str, source_ip: str,
                 now: dt.datetime) -> tuple[list[Any], frozenset[str]]:
        """(the sets that still permit, the rules of the conditions that failed when none does)."""
        kept: list[Any] = []
        failed: set[str] = set()
        minute = int(now.timestamp() // 60)
        for ps in permitting:
            c = ps.conditions
            if c is None:
                kept.append(ps)
                continue
            missed = set()
            if not c.in_time(now):
                missed.add(TIME_WINDOW)
            if c.source_cidrs and not ip_in_ranges(source_ip, c.source_cidrs):
                missed.add(SOURCE)
            if not missed and c.max_requests_per_minute is not None \
                    and self._count(user, ps.external_id, minute) > c.max_requests_per_minute:
                missed.add(RATE)
            if missed:
                failed |= missed
            else:
                kept.append(ps)
        if kept:
            return kept, frozenset()
        return list(permitting), frozenset(failed)
