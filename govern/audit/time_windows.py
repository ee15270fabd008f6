"""Right-sizing in time (issue #21; docs/access-conditions.md "Recommended from observed use").

For an integration user with at least `policy.window_min_calls` allowed calls in the usage window, the days and
hours in which all of them fell become a recommended `time_windows` condition, in governance.yaml syntax (what a
permission set's `conditions:` accepts: it is parsed with govern.domain.conditions.AccessConditions before it is
offered). The hours are read on the wall clock of the time zone of the permission set's own time window, if it has
one, else UTC.

How the window is built: each allowed call's (day of the week, hour) on that wall clock; per day, from the first
hour to the end of the last (`09:00`-`17:00`); days with the same hours share one entry. No overnight windows: a
user calling at 23:00 and 01:00 gets the two days' hours.

The recommendation is proved by replay, as the scope recommendation is (govern.audit.rightsizing.replay): every
hour in which the user was allowed calls (for a UTC user, each hour of the week, at its instant; else the first and
the last call of each UTC hour of the window) is decided by `AccessConditions.in_time`, the function the decider
applies, once per distinct instant; `would_deny` must be 0, else nothing is recommended.

No recommendation when the calls fell at every hour of every day, or when every permission set it would go on
already has a time window as narrow or narrower (checked every 5 minutes over a week: the sets' windows must
lie inside the recommended one).
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from govern.audit.model import AuditModel, CallHourM, PermissionSetM
from govern.domain.conditions import AccessConditions

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SAMPLE_STEP = dt.timedelta(minutes=5)


@dataclass
class WindowRecommendation:
    time_zone: str
    observed_requests: int
    conditions: dict[str, Any] | None = None  # {"time_windows": [...]}: paste under the sets' `conditions:`
    permission_sets: list[str] = field(default_factory=list)  # the sets it goes on
    proof: dict[str, int] = field(default_factory=dict)
    reason: str = ""  # why nothing is recommended, when conditions is None

    def as_dict(self) -> dict[str, Any]:
        return {"conditions": self.conditions, "permission_sets": self.permission_sets, "time_zone": self.time_zone,
                "observed_requests": self.observed_requests, "proof": self.proof, "reason": self.reason}


def as_yaml(conditions: dict[str, Any]) -> str:
    """The recommended block as governance.yaml text, to paste into a permission set."""
    return yaml.safe_dump({"conditions": conditions}, sort_keys=False, default_flow_style=None)


def time_zone_of(sets: list[PermissionSetM]) -> str:
    """The time zone of the first time window of these sets, else UTC."""
    for ps in sets:
        for window in (ps.conditions or {}).get("time_windows") or ():
            return str(window.get("time_zone") or "UTC")
    return "UTC"


def windows_from(hours: list[CallHourM], zone: str) -> list[dict[str, Any]]:
    """The governance.yaml `time_windows` entries covering the first and last call of every hour."""
    by_day: dict[int, set[int]] = {}
    for t in _instants(hours):  # each instant read once (a weekly slot's first and last are one)
        day, hour = _wall_clock(t, zone)
        by_day.setdefault(day, set()).add(hour)
    spans: dict[tuple[int, int], list[int]] = {}
    for day in sorted(by_day):
        spans.setdefault((min(by_day[day]), max(by_day[day]) + 1), []).append(day)
    ordered = sorted(spans.items(), key=lambda item: (item[1][0], item[0]))
    return [{"days": [DAYS[d] for d in days], "start": f"{start:02d}:00", "end": f"{end:02d}:00", "time_zone": zone}
            for (start, end), days in ordered]


def _instants(hours: list[CallHourM]) -> set[dt.datetime]:
    return {h.first_at for h in hours} | {h.last_at for h in hours}


@functools.lru_cache(maxsize=4096)
def _wall_clock(t: dt.datetime, zone: str) -> tuple[int, int]:
    """The weekday (Monday 0) and hour of instant `t` on `zone`'s wall clock. Users read by hour of the week share
    their slots' 168 instants, so each is converted once per zone rather than once per user."""
    local = t.astimezone(ZoneInfo(zone))
    return local.weekday(), local.hour


def replay(conditions: dict[str, Any], hours: list[CallHourM]) -> dict[str, int]:
    """Decide each observed hour's first and last call under the window (`conditions`, as governance.yaml's
    `conditions:`); `would_deny` must be 0. Each distinct instant is decided by `AccessConditions.in_time` (the
    decider's own function) once per window: users given the same window share the decisions."""
    window = json.dumps(conditions, sort_keys=True)
    allowed = {t: _in_window(window, t) for t in _instants(hours)}
    denied_hours = denied = total = 0
    for h in hours:
        total += h.count
        if not (allowed[h.first_at] and allowed[h.last_at]):
            denied_hours += 1
            denied += h.count
    return {"replayed_requests": total, "replayed_hours": len(hours), "would_deny": denied,
            "would_deny_hours": denied_hours}


@functools.lru_cache(maxsize=1 << 14)
def _in_window(window: str, t: dt.datetime) -> bool:
    return _parsed(window).in_time(t)


@functools.lru_cache(maxsize=64)
def _parsed(window: str) -> AccessConditions:
    return AccessConditions.model_validate_json(window)  # exactly what `conditions:` accepts


def _within(narrow: AccessConditions, wide: AccessConditions, since: dt.datetime) -> bool:
    """True when every instant of a week from `since` that `narrow`'s windows admit, `wide`'s admit too."""
    t, end = since, since + dt.timedelta(days=7)
    while t < end:
        if narrow.in_time(t) and not wide.in_time(t):
            return False
        t += _SAMPLE_STEP
    return True


def recommend_window(model: AuditModel, observed: int, hours: list[CallHourM],
                     used: list[PermissionSetM]) -> WindowRecommendation:
    """`observed`: the user's allowed calls in the window; `hours`: them by hour (loaded from the minimum up);
    `used`: the user's permission sets whose grants those calls used."""
    zone = time_zone_of(used)
    rec = WindowRecommendation(zone, observed)
    minimum = model.policy.window_min_calls
    if observed < minimum:
        rec.reason = f"{observed} allowed calls in the window; a time window is recommended from {minimum}"
        return rec
    if not hours:  # a model built without the hourly aggregate (an imported org's has no decision log)
        rec.reason = "no hourly record of the calls"
        return rec
    windows = windows_from(hours, zone)
    if len(windows) == 1 and len(windows[0]["days"]) == 7 and (windows[0]["start"], windows[0]["end"]) == ("00:00", "24:00"):
        rec.reason = "the calls fell at every hour of every day"
        return rec
    conditions = {"time_windows": windows}
    parsed = AccessConditions.model_validate(conditions)  # exactly what `conditions:` accepts
    rec.proof = replay(conditions, hours)
    if rec.proof["would_deny"]:
        rec.reason = "the replay of the window's calls denies some of them"
        return rec
    start = model.now - dt.timedelta(days=7)
    week = start.replace(minute=start.minute - start.minute % 5, second=0, microsecond=0)  # on HH:M0 and HH:M5
    targets = []
    for ps in used:
        own = (ps.conditions or {}).get("time_windows")
        if own and _within(AccessConditions.model_validate({"time_windows": own}), parsed, week):
            continue  # its window is already as narrow
        targets.append(ps.id)
    if not targets:
        rec.reason = "the permission sets already have a time window as narrow or narrower"
        return rec
    rec.conditions, rec.permission_sets = conditions, targets
    return rec
