"""Right-sizing in time (#21; docs/access-conditions.md "Recommended from observed use"): calls made over HTTP with
govern's clock set to chosen days and hours, then `govern audit` recommends the time window they fell in, in the
report (JSON, HTML) and on its output; pasted into governance.yaml and applied, the window allows every observed
call again (over HTTP and in the audit's replay) and the next audit recommends nothing more."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
import yaml

from tests.audit.schema_check import errors as schema_errors
from tests.config_as_code.world import USER, find

UTC = dt.UTC
HOURS = (9, 11, 14, 16)  # 09:00 to 17:00
DAYS = (0, 1, 2)  # Monday to Wednesday

# The loader's slot queries differ per dialect (SQLite text, PostgreSQL to_char): on both backends in CI.
pytestmark = [pytest.mark.db]


@pytest.fixture
def world(settings, fake_upstream, resources):
    from tests.config_as_code.world import build_world

    built = build_world(settings, fake_upstream, resources)
    yield built
    built.services.close()


def _monday_weeks_ago(weeks: int) -> dt.date:
    today = dt.datetime.now(UTC).date()
    return today - dt.timedelta(days=today.weekday() + 7 * weeks)


def _call_times(zone: dt.tzinfo = UTC) -> list[dt.datetime]:
    """24 calls: Monday to Wednesday, at 09:10, 11:10, 14:10 and 16:50 on the zone's wall clock, two weeks running."""
    out = []
    for monday in (_monday_weeks_ago(3), _monday_weeks_ago(2)):
        for day in DAYS:
            for hour in HOURS:
                local = dt.datetime.combine(monday + dt.timedelta(days=day), dt.time(hour, 50 if hour == 16 else 10),
                                            tzinfo=zone)
                out.append(local.astimezone(UTC))
    return out


def _make_calls(world, times) -> list[int]:
    statuses = []
    for t in times:
        world.clock.set(t)
        statuses.append(world.proxy("stock-api", "items/1").status_code)
    return statuses


def _begin_log_and_age_user(world) -> None:
    """The decision log began before the 30-day window, and the user is older than it (as an instance in use for
    weeks would be): one call 40 days ago, and the user's creation date moved back, the one thing no API sets."""
    world.clock.set(dt.datetime.now(UTC) - dt.timedelta(days=40))
    assert world.proxy("stock-api", "items/1").status_code == 200
    with world.services.engine.begin() as conn:
        conn.execute(sa.text("UPDATE integration_user SET created_at = :t"),
                     {"t": dt.datetime.now(UTC) - dt.timedelta(days=60)})
    assert world.services.decision_log.flush()


def _audit(runner, tmp_path, name: str):
    out = tmp_path / f"{name}.json"
    result = runner.invoke(["audit", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    return report, next(r for r in report["rightsizing"] if r["user"] == USER), result


def test_the_audit_recommends_the_window_the_calls_fell_in_and_pasting_it_keeps_them_allowed(world, runner, tmp_path):
    from tests.audit.test_audit_real_log import ROOT

    _begin_log_and_age_user(world)
    times = _call_times()
    assert _make_calls(world, times) == [200] * len(times)
    assert world.services.decision_log.flush()

    report, rec, result = _audit(runner, tmp_path, "first")
    assert schema_errors(json.loads((ROOT / "docs" / "audit-report.schema.json").read_text()), report) == []
    window = rec["time_window"]
    expected = {"time_windows": [{"days": ["mon", "tue", "wed"], "start": "09:00", "end": "17:00", "time_zone": "UTC"}]}
    assert window["conditions"] == expected, window
    assert window["permission_sets"] == ["shop-reader"] and window["observed_requests"] == len(times)
    assert window["proof"]["replayed_requests"] == len(times) and window["proof"]["would_deny"] == 0
    # on `govern audit`'s output, as YAML to paste
    shown = result.stderr
    assert f"time window for {USER}" in shown and "shop-reader" in shown
    pasted = yaml.safe_load("\n".join(line[2:] for line in shown.split(f"time window for {USER}")[1].splitlines()[1:]
                                      if line.startswith("  ")))
    assert pasted == {"conditions": expected}
    html = tmp_path / "first.html"
    assert runner.invoke(["audit", "--format", "html", "--out", str(html)]).exit_code == 0
    assert "time windows from observed use" in html.read_text() and "mon, tue, wed" in html.read_text()

    # Pasted into governance.yaml and applied: every observed call is allowed again, over HTTP.
    find(world.doc, "permission_sets", "shop-reader")["conditions"] = pasted["conditions"]
    path = tmp_path / "governance.yaml"
    path.write_text(yaml.safe_dump(world.doc, sort_keys=False))
    applied = runner.invoke(["apply", "-f", str(path)])
    assert applied.exit_code == 0, applied.output
    world.services.landscape.invalidate()
    assert _make_calls(world, times) == [200] * len(times)
    thursday = times[-1] + dt.timedelta(days=1)  # outside the window: refused, naming it
    world.clock.set(thursday)
    denied = world.proxy("stock-api", "items/1")
    assert denied.status_code == 403 and denied.get_json()["rule"] == "condition:time_window"
    assert world.services.decision_log.flush()

    # The audit's replay over the log allows every observed call under the applied window; nothing more to narrow.
    _, rec, result = _audit(runner, tmp_path, "second")
    window = rec["time_window"]
    assert window["conditions"] is None and "already have a time window" in window["reason"], window
    # A user whose sets name no zone but UTC is replayed by hour of the week (its calls on the same weekday and
    # hour share one slot): the calls of both audits' days fall in these slots.
    slots = {(t.astimezone(dt.UTC).weekday(), t.astimezone(dt.UTC).hour) for t in times}
    assert window["proof"] == {"replayed_requests": 2 * len(times), "replayed_hours": len(slots), "would_deny": 0,
                               "would_deny_hours": 0}
    assert f"time window for {USER}" not in result.stderr


def test_the_window_is_read_in_the_sets_time_zone_and_needs_enough_calls(world, runner, tmp_path):
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    everywhen = {"days": "all", "start": "00:00", "end": "24:00", "time_zone": "Europe/Paris"}
    find(world.doc, "permission_sets", "shop-reader")["conditions"] = {"time_windows": [everywhen]}
    world.apply()
    _begin_log_and_age_user(world)
    times = _call_times(paris)
    assert _make_calls(world, times[:19]) == [200] * 19
    assert world.services.decision_log.flush()
    _, rec, _ = _audit(runner, tmp_path, "few")
    assert rec["time_window"]["conditions"] is None and "recommended from 20" in rec["time_window"]["reason"]

    assert _make_calls(world, times[19:]) == [200] * (len(times) - 19)
    assert world.services.decision_log.flush()
    _, rec, _ = _audit(runner, tmp_path, "enough")
    assert rec["time_window"]["conditions"] == {"time_windows": [
        {"days": ["mon", "tue", "wed"], "start": "09:00", "end": "17:00", "time_zone": "Europe/Paris"}]}


def test_a_utc_users_calls_are_counted_by_weekday_and_hour_of_the_utc_wall_clock(services):
    """The loader's hour-of-the-week slots (counted in SQL): a call a microsecond before Monday is Sunday's 23:00, one
    at midnight is Monday's 00:00; each slot holds its calls' count at one instant of that weekday and hour."""
    from govern.domain.access import AccessDecision, AccessRequest, Caller
    from govern.store.audit_loader import load_model

    req = AccessRequest(caller=Caller(integration_user="u1", scopes=(), source_ip="10.0.0.1"), action="proxy",
                        named_credential="erp-api", method="GET", path="/orders")
    allowed = AccessDecision(allowed=True, rules=("permit:x",))
    today = dt.datetime.now(UTC).date()
    sunday = dt.datetime.combine(today - dt.timedelta(days=today.weekday() + 8), dt.time(0, 0), tzinfo=UTC)
    calls = {sunday + dt.timedelta(days=1) - dt.timedelta(microseconds=1): 10,  # Sunday 23:59:59.999999
             sunday + dt.timedelta(days=1): 5,  # Monday 00:00
             sunday - dt.timedelta(hours=11, minutes=30): 4,  # Saturday 12:30
             sunday + dt.timedelta(days=3, hours=9, seconds=1): 3}  # Wednesday 09:00:01
    for at, n in calls.items():
        for _ in range(n):
            services.decision_log.append(req, allowed, at=at)
    services.decision_log.append(req, AccessDecision(allowed=False, rules=("deny:x",)), at=sunday)  # denied: not counted
    assert services.decision_log.flush()
    with services.sessions() as s:
        hours = load_model(s, dt.datetime.now(UTC)).usage["u1"].call_hours
    assert {(h.hour.weekday(), h.hour.hour): h.count for h in hours} == {(6, 23): 10, (0, 0): 5, (5, 12): 4, (2, 9): 3}
    assert all(h.first_at == h.last_at == h.hour and (h.hour.minute, h.hour.second) == (0, 0) for h in hours)
