"""Maintenance windows for the proxy: govern.domain.maintenance, also for plain stored mappings. Pure."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from govern.domain.maintenance import DAYS, MaintenanceWindow  # noqa: F401 - re-exported
from govern.domain.maintenance import window_end as _window_end


def window_end(windows: Iterable[MaintenanceWindow | dict[str, Any]], now: dt.datetime) -> dt.datetime | None:
    """The end of the window `now` falls in, or None outside every window."""
    return _window_end([w if isinstance(w, MaintenanceWindow) else MaintenanceWindow.model_validate(w)
                        for w in windows or ()], now)
