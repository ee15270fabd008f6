"""Access conditions on a permission set (issue #21): when, how often and from where its grants hold.

governance.yaml's `permission_sets[].conditions`, the stored JSON and what the decider evaluates are this one
value. A permission set with conditions permits a request only while all of them hold:
- `time_windows`: the request falls in one of the windows (days of the week, `start`-`end` in `time_zone`;
  the times are parsed as maintenance windows are, so `end: "24:00"` is the end of the day and a window whose end
  is not after its start runs past midnight into the next day);
- `max_requests_per_minute`: the integration user has made at most this many requests under the permission set
  in the current minute (a fixed window on govern's clock);
- `source_cidrs`: the caller's address is inside one of these ranges (each within the user's own `ip_ranges`,
  which `govern apply` checks).
Pure: the caller passes the time and the count.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from govern.domain.maintenance import HHMM, MaintenanceWindow
from govern.domain.resilience import Value

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# The rule a denial names for each condition (the decision log's rule and the problem's `rule`).
TIME_WINDOW, RATE, SOURCE = "condition:time_window", "condition:max_requests_per_minute", "condition:source_cidrs"
WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri")


def _cidr(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a CIDR such as 10.20.0.0/16")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR without host bits (expected e.g. 10.20.0.0/16)") from None


def _days(value: Any) -> Any:
    if value == "weekdays":
        return list(WEEKDAYS)
    if value in ("all", "every_day"):
        return ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return value


Cidr = Annotated[str, BeforeValidator(_cidr)]


class TimeWindow(Value):
    """`{days: [mon, tue], start: "08:00", end: "18:00", time_zone: Europe/Paris}`; `days: weekdays` is
    Monday to Friday."""

    days: Annotated[list[Day], BeforeValidator(_days), Field(min_length=1)]
    start: HHMM
    end: HHMM
    time_zone: str = "UTC"

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris, UTC)") from None
        return value

    @functools.cached_property
    def _per_day(self) -> tuple[tuple[ZoneInfo, MaintenanceWindow], ...]:
        """The window as one maintenance window per day, built once (validating them on every decision cost
        more than the decision: the access conditions are checked on every token and proxied call)."""
        zone = ZoneInfo(self.time_zone)
        return tuple((zone, MaintenanceWindow(day=day, start=self.start, end=self.end)) for day in self.days)

    def contains(self, now: dt.datetime) -> bool:
        """True when `now` falls in the window, read on the wall clock of `time_zone`."""
        per_day = self._per_day
        wall = now.astimezone(per_day[0][0]).replace(tzinfo=dt.UTC)  # local wall time, as UTC
        return any(window.end_if_inside(wall) is not None for _zone, window in per_day)


class AccessConditions(Value):
    time_windows: list[TimeWindow] = Field(default_factory=list)
    max_requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    source_cidrs: list[Cidr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self):
        if not self.time_windows and self.max_requests_per_minute is None and not self.source_cidrs:
            raise ValueError("conditions: set at least one of time_windows, max_requests_per_minute, source_cidrs")
        return self

    def in_time(self, now: dt.datetime) -> bool:
        return not self.time_windows or any(w.contains(now) for w in self.time_windows)


def cidrs_outside(narrow: list[str] | tuple[str, ...], wide: list[str] | tuple[str, ...]) -> list[str]:
    """The ranges of `narrow` that are not inside one of `wide` (an empty `wide` contains nothing)."""
    nets = [ipaddress.ip_network(w) for w in wide]
    out = []
    for cidr in narrow:
        net = ipaddress.ip_network(cidr)
        if not any(net.version == w.version and net.subnet_of(w) for w in nets):  # type: ignore[arg-type]
            out.append(cidr)
    return out
