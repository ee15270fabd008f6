"""Access conditions at decision time (issue #21; docs/access-conditions.md).

Of the permission sets that permit a request, those whose conditions hold (or that have none) go on permitting.
If none is left, the conditions that failed are handed to Cedar as `context.conditions` (one Bool per condition)
and `050_access_conditions.cedar` forbids, naming each one: `condition:time_window`,
`condition:max_requests_per_minute`, `condition:source_cidrs`.

The request rate is counted per (integration user, permission set) in fixed one-minute windows of govern's clock.
The count lives where every govern process sees it: the shared cache (Redis with GOVERN_REDIS_URL, else the
database's shared state, govern.store.shared_state), one round trip per decision whatever the number of rated
sets (`Cache.incr_each`). Only an instance whose cache is in process memory (one process) counts in this
process. A request is counted only under a set whose time window and source range hold; a user without a rate
condition costs nothing.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from govern.domain.access_rules import ip_in_ranges
from govern.domain.conditions import RATE, SOURCE, TIME_WINDOW

CONDITION_PREFIX = "condition:"
CONDITION_RULES = {"time_window": TIME_WINDOW, "max_requests_per_minute": RATE, "source_cidrs": SOURCE}
CONDITIONS_REASON = "an access condition of the permission sets does not hold"


# A counter outlives its minute by this much (a process whose clock lags a little still finds it), then expires.
COUNTER_TTL_SECONDS = 120


class MinuteCounter(Protocol):
    def incr_each(self, keys: Sequence[str], ttl: float) -> list[int]: ...


class InProcessCounter:
    """The counts of one process, for an instance that is one process (its cache is in memory)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (minute, count)
        self._lock = threading.Lock()

    def incr_each(self, keys: Sequence[str], ttl: float) -> list[int]:
        out = []
        with self._lock:
            if len(self._counts) > 10_000:  # drop past minutes
                latest = max(m for m, _ in self._counts.values())
                self._counts = {k: v for k, v in self._counts.items() if v[0] >= latest}
            for key in keys:
                minute = int(key.rsplit(":", 1)[1])
                held = self._counts.get(key)
                count = held[1] + 1 if held is not None else 1
                self._counts[key] = (minute, count)
                out.append(count)
        return out


def rate_key(user: str, pset: str, minute: int) -> str:
    return f"condition-rate:{user}:{pset}:{minute}"


class ConditionEvaluator:
    def __init__(self, counter: MinuteCounter | None = None) -> None:
        self._counter: MinuteCounter = counter if counter is not None else InProcessCounter()

    def evaluate(self, permitting: Sequence[Any], user: str, source_ip: str,
                 now: dt.datetime) -> tuple[list[Any], frozenset[str]]:
        """(the sets that still permit, the rules of the conditions that failed when none does)."""
        missed: dict[int, set[str]] = {}
        rated: list[int] = []
        for i, ps in enumerate(permitting):
            c = ps.conditions
            if c is None:
                continue
            missed[i] = set()
            if not c.in_time(now):
                missed[i].add(TIME_WINDOW)
            if c.source_cidrs and not ip_in_ranges(source_ip, c.source_cidrs):
                missed[i].add(SOURCE)
            if not missed[i] and c.max_requests_per_minute is not None:
                rated.append(i)
        if rated:  # one round trip for all the rated sets of this decision
            minute = int(now.timestamp() // 60)
            counts = self._counter.incr_each(
                [rate_key(user, permitting[i].external_id, minute) for i in rated], COUNTER_TTL_SECONDS)
            for i, count in zip(rated, counts, strict=True):
                if count > permitting[i].conditions.max_requests_per_minute:
                    missed[i].add(RATE)
        kept = [ps for i, ps in enumerate(permitting) if not missed.get(i)]
        if kept:
            return kept, frozenset()
        return list(permitting), frozenset(rule for rules in missed.values() for rule in rules)
