"""Maintenance windows (seed practice 19): weekly UTC windows such as `{day: sun, start: "02:00", end: "04:00"}`.

The same value is governance.yaml's `contract.maintenance_windows` item, the stored JSON and what the proxy
checks. `end: "24:00"` is the end of the day (ISO 8601 allows 24:00 for it): `22:00`-`24:00` on Saturday
covers 23:59 Saturday and not 00:00 Sunday. A window whose end is not after its start runs past midnight
into the next day. Pure: the caller passes the time.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Iterable, Literal

from pydantic import BeforeValidator

from govern.domain.resilience import Value

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _hhmm(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 02:00 as base-60 120
        value = f"{value // 60:02d}:{value % 60:02d}"
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError("expected a UTC time HH:MM (00:00 to 24:00)")
    return value.strip()


HHMM = Annotated[str, BeforeValidator(_hhmm)]


def _minutes(hhmm: str) -> int:
    hour, minute = hhmm.split(":")
    return int(hour) * 60 + int(minute)


class MaintenanceWindow(Value):
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    start: HHMM
    end: HHMM

    def occurrence(self, date: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """The window's [start, end) in UTC when it starts on `date`."""
        midnight = dt.datetime.combine(date, dt.time(0, 0), tzinfo=dt.timezone.utc)
        start = midnight + dt.timedelta(minutes=_minutes(self.start))
        end = midnight + dt.timedelta(minutes=_minutes(self.end))
        if end <= start:
            end += dt.timedelta(days=1)
        return start, end

    def end_if_inside(self, now: dt.datetime) -> dt.datetime | None:
        """The end of this window if `now` falls in it, else None."""
        now = now.astimezone(dt.timezone.utc)
        for back in (0, 1):  # started today, or yesterday and runs past midnight
            date = (now - dt.timedelta(days=back)).date()
            if DAYS[date.weekday()] != self.day:
                continue
            start, end = self.occurrence(date)
            if start <= now < end:
                return end
        return None


def window_end(windows: Iterable[MaintenanceWindow], now: dt.datetime) -> dt.datetime | None:
    """The latest end among the windows `now` falls in, or None outside every window."""
    ends = [end for w in windows or () if (end := w.end_if_inside(now)) is not None]
    return max(ends) if ends else None
