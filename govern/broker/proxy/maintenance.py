"""Maintenance windows (seed practice 19): weekly UTC windows like `{day: sun, start: "02:00", end: "04:00"}`.
A window whose end is not after its start runs past midnight into the next day. Pure."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hm(value: str) -> dt.time:
    hour, _, minute = str(value).partition(":")
    return dt.time(int(hour), int(minute or 0))


def window_end(windows: Iterable[dict[str, Any]], now: dt.datetime) -> dt.datetime | None:
    """The end of the window `now` falls in, or None outside every window."""
    now = now.astimezone(dt.timezone.utc)
    latest: dt.datetime | None = None
    for window in windows or ():
        day = str(window.get("day", "")).lower()[:3]
        if day not in DAYS:
            continue
        start_t, end_t = _hm(window.get("start", "00:00")), _hm(window.get("end", "00:00"))
        # The window may have started today or (if it runs past midnight) yesterday.
        for back in (0, 1, 7):
            date = (now - dt.timedelta(days=back)).date()
            if DAYS[date.weekday()] != day:
                continue
            start = dt.datetime.combine(date, start_t, tzinfo=dt.timezone.utc)
            end = dt.datetime.combine(date, end_t, tzinfo=dt.timezone.utc)
            if end <= start:
                end += dt.timedelta(days=1)
            if start <= now < end and (latest is None or end > latest):
                latest = end
    return latest
