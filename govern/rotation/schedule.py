"""When a secret is next due: an interval ("90d", "12h") or a five-field cron expression, in UTC, plus jitter.

Jitter spreads rotations that share a schedule so that a fleet does not rotate in one burst; the random
source is injected so tests control it.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Protocol

from croniter import croniter

from govern.errors import ValidationFailed

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
MAX_JITTER_SECONDS = 3600.0


class Random(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def parse_interval(text: str) -> dt.timedelta:
    m = _INTERVAL.match(text or "")
    if not m or int(m.group(1)) <= 0:
        raise ValidationFailed([{"location": "schedule", "message": f"not an interval like 90d or 12h: {text!r}"}])
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def is_interval(schedule: str) -> bool:
    return bool(_INTERVAL.match(schedule or ""))


def validate(schedule: str) -> None:
    if is_interval(schedule):
        parse_interval(schedule)
        return
    if not croniter.is_valid(schedule):
        raise ValidationFailed([{"location": "schedule", "message": f"neither an interval nor a cron expression: {schedule!r}"}])


def next_due(schedule: str, after: dt.datetime, rng: Random | None = None) -> dt.datetime:
    """The next due time strictly after `after` (UTC), plus up to 10% of the period (at most an hour) of jitter."""
    after = after.astimezone(dt.UTC)
    if is_interval(schedule):
        period = parse_interval(schedule)
        base = after + period
    else:
        validate(schedule)
        it = croniter(schedule, after)
        base = it.get_next(dt.datetime)
        period = it.get_next(dt.datetime) - base
        base = base.astimezone(dt.UTC)
    if rng is None:
        return base
    jitter = rng.uniform(0.0, min(MAX_JITTER_SECONDS, period.total_seconds() * 0.1))
    return base + dt.timedelta(seconds=jitter)
