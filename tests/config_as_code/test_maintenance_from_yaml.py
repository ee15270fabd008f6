"""A maintenance window ending at "24:00" (the example's Salesforce window) is accepted by the schema and
works at runtime (issue #15). Before, every allowed proxy call to a system with such a window answered 500
(`dt.time(24, 0)`), whatever the time, and the decision log recorded those calls as allowed."""
from __future__ import annotations

import datetime as dt

import pytest

from govern.domain.maintenance import MaintenanceWindow, window_end
from tests.config_as_code.world import find

UTC = dt.timezone.utc
SAT_2359 = dt.datetime(2026, 11, 28, 23, 59, tzinfo=UTC)
SUN_0000 = dt.datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


def test_24_00_ends_the_day():
    window = MaintenanceWindow(day="sat", start="22:00", end="24:00")
    assert window_end([window], SAT_2359) == SUN_0000
    assert window_end([window], SUN_0000) is None
    assert window_end([window], dt.datetime(2026, 11, 28, 21, 59, tzinfo=UTC)) is None
    assert window_end([window], dt.datetime(2026, 11, 28, 22, 0, tzinfo=UTC)) == SUN_0000


def test_whole_day_and_overnight_windows():
    whole = MaintenanceWindow(day="sun", start="00:00", end="24:00")
    assert window_end([whole], SUN_0000) == dt.datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert window_end([whole], SAT_2359) is None
    overnight = MaintenanceWindow(day="sat", start="23:00", end="01:00")
    assert window_end([overnight], SUN_0000) == dt.datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["24:01", "25:00", "7:00", "noon"])
def test_times_past_24_00_are_refused(bad):
    with pytest.raises(ValueError):
        MaintenanceWindow(day="sat", start="22:00", end=bad)


def test_a_window_ending_at_24_00_refuses_inside_and_serves_outside(world):
    find(world.doc, "systems", "stock")["contract"] = {
        "maintenance_windows": [{"day": "sat", "start": "22:00", "end": "24:00"}]}
    world.apply()
    # Saturday noon: outside the window. Before the fix: 500 configuration-independent crash.
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 200, r.get_data(as_text=True)

    world.clock.set(SAT_2359)
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 503 and r.get_json()["code"] == "maintenance_window"
    assert r.headers["Retry-After"] == "60"

    world.clock.set(SUN_0000)
    assert world.proxy("stock-api", "items/1").status_code == 200
    assert world.resources.count == 2

    proxied = [d for d in world.decisions() if d.action == "proxy"]
    assert [(d.allowed, d.upstream_status) for d in proxied] == [(True, 200), (True, None), (True, 200)]
