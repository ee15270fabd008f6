"""List formatting: relative times with the exact time in a title, shortened correlation ids."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from govern.admin.views.base import relative_time, short_id

NOW = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def test_relative_time_keeps_the_exact_time_in_its_title():
    three_hours_ago = str(relative_time(NOW - dt.timedelta(hours=3, minutes=20), NOW))
    assert ">3 h ago</time>" in three_hours_ago
    assert 'title="2026-01-05 05:40 UTC"' in three_hours_ago
    assert 'datetime="2026-01-05T05:40:00+00:00"' in three_hours_ago
    assert ">in 2 d</time>" in str(relative_time(NOW + dt.timedelta(days=2, hours=1), NOW))
    assert ">just now</time>" in str(relative_time(NOW - dt.timedelta(seconds=20), NOW))
    # SQLite hands back naive datetimes, which are UTC.
    assert ">5 min ago</time>" in str(relative_time(dt.datetime(2026, 1, 5, 8, 55), NOW))
    assert relative_time(None, NOW) == ""


def test_correlation_ids_are_shortened_with_the_whole_id_in_the_title():
    row = SimpleNamespace(correlation_id="0f8e2c4a-1b7d-4c3e-9a55-2f1e0d9c8b7a")
    html = str(short_id(None, None, row, "correlation_id"))
    assert html == '<code title="0f8e2c4a-1b7d-4c3e-9a55-2f1e0d9c8b7a">0f8e2c4a&hellip;</code>'
    assert str(short_id(None, None, SimpleNamespace(correlation_id="<b>x"), "correlation_id")) == "<code>&lt;b&gt;x</code>"
