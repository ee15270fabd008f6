"""Access conditions on permission sets (#21; docs/access-conditions.md): applied from governance.yaml through the
apply service, observed over HTTP through the real app with the injected clock (tests never sleep)."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml

from govern.domain.conditions import AccessConditions, TimeWindow
from tests.config_as_code.world import find

UTC = dt.UTC
SATURDAY_NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # the world's clock
# Monday 30 November 2026; Paris is UTC+1 in winter.
MONDAY = dt.date(2026, 11, 30)
OFFICE_HOURS = {"days": "weekdays", "start": "09:00", "end": "17:00", "time_zone": "Europe/Paris"}


def _at(date: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(hh, mm), tzinfo=UTC)


def _pset(world) -> dict:
    return find(world.doc, "permission_sets", "shop-reader")


def _condition(world, **conditions) -> None:
    _pset(world)["conditions"] = conditions
    world.apply()


def _denied(response, rule: str) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)
    problem = response.get_json()
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert problem["code"] == "condition_not_met" and problem["rule"] == rule, problem


def _ok(response) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)


# --- the value ---------------------------------------------------------------------------------------------

def test_a_window_is_read_on_the_wall_clock_of_its_time_zone():
    w = TimeWindow.model_validate(OFFICE_HOURS)
    assert w.days == ["mon", "tue", "wed", "thu", "fri"]
    assert w.contains(_at(MONDAY, 8, 0))  # 09:00 in Paris
    assert not w.contains(_at(MONDAY, 7, 59))
    assert w.contains(_at(MONDAY, 15, 59)) and not w.contains(_at(MONDAY, 16, 0))  # 17:00 in Paris ends it
    assert not w.contains(SATURDAY_NOON)


def test_24_00_ends_the_day_and_an_overnight_window_runs_into_the_next():
    evening = TimeWindow.model_validate({"days": ["sat"], "start": "22:00", "end": "24:00"})
    assert evening.contains(dt.datetime(2026, 11, 28, 23, 59, tzinfo=UTC))
    assert not evening.contains(dt.datetime(2026, 11, 29, 0, 0, tzinfo=UTC))
    night = TimeWindow.model_validate({"days": ["sat"], "start": "22:00", "end": "02:00"})
    assert night.contains(dt.datetime(2026, 11, 29, 1, 59, tzinfo=UTC))
    assert not night.contains(dt.datetime(2026, 11, 29, 2, 0, tzinfo=UTC))


@pytest.mark.parametrize("bad", [
    {"time_windows": [{**OFFICE_HOURS, "time_zone": "Mars/Olympus"}]},
    {"time_windows": [{**OFFICE_HOURS, "start": "25:00"}]},
    {"time_windows": [{**OFFICE_HOURS, "days": []}]},
    {"max_requests_per_minute": 0},
    {"source_cidrs": ["10.0.0.1/8"]},
    {},
])
def test_bad_conditions_are_refused(bad):
    with pytest.raises(ValueError):
        AccessConditions.model_validate(bad)


# --- over HTTP, after apply ----------------------------------------------------------------------------------

def test_outside_the_time_window_proxy_and_token_calls_are_denied_naming_it(world):
    _condition(world, time_windows=[OFFICE_HOURS])
    _denied(world.proxy("stock-api", "items/1"), "condition:time_window")  # Saturday noon
    _denied(world.upstream_token(), "condition:time_window")
    assert world.resources.count == 0  # nothing reached the upstream
    logged = world.decisions()[-2:]
    assert [(d.outcome, d.rules) for d in logged] == [("deny", ["condition:time_window"])] * 2
    world.clock.set(_at(MONDAY, 8, 30))  # 09:30 in Paris
    _ok(world.proxy("stock-api", "items/1"))
    _ok(world.upstream_token())
    world.clock.set(_at(MONDAY, 16, 0))  # 17:00 in Paris: the window has ended
    _denied(world.proxy("stock-api", "items/1"), "condition:time_window")
    assert world.decisions()[-1].rules == ["condition:time_window"]


def test_a_permission_set_without_conditions_still_permits_on_its_own(world):
    _pset(world)["conditions"] = {"time_windows": [OFFICE_HOURS]}
    world.doc["permission_sets"].append({"id": "stock-always", "scopes": ["items.read"], "max_token_lifetime": "15m",
                                         "grants": [{"named_credential": "stock-api", "principal": "default",
                                                     "methods": ["GET"], "paths": ["/**"]}]})
    find(world.doc, "integration_users", "order-sync")["permission_sets"].append("stock-always")
    world.apply()
    _ok(world.proxy("stock-api", "items/1"))  # stock-always permits at any time
    _denied(world.upstream_token(), "condition:time_window")  # only shop-reader grants shop-orders


def test_the_scopes_of_a_set_whose_conditions_fail_are_not_granted_through_another_set(world):
    _pset(world)["conditions"] = {"time_windows": [OFFICE_HOURS]}  # grants orders.read on shop-orders
    world.doc["permission_sets"].append({"id": "shop-items", "scopes": ["items.read"], "max_token_lifetime": "15m",
                                         "grants": [{"named_credential": "shop-orders", "principal": "default"}]})
    find(world.doc, "integration_users", "order-sync")["permission_sets"].append("shop-items")
    world.apply()
    r = world.upstream_token(scope="orders.read")  # Saturday: only shop-items permits, and not orders.read
    assert r.status_code == 403 and r.get_json()["rule"] == "deny:scope_outside_grant", r.get_json()
    world.clock.set(_at(MONDAY, 9, 0))
    _ok(world.upstream_token(scope="orders.read"))


def test_past_the_request_rate_calls_are_denied_until_the_next_minute(world):
    world.clock.set(_at(MONDAY, 10, 0))
    _condition(world, max_requests_per_minute=3)
    for _ in range(3):
        _ok(world.proxy("stock-api", "items/1"))
    _denied(world.proxy("stock-api", "items/1"), "condition:max_requests_per_minute")
    _denied(world.upstream_token(), "condition:max_requests_per_minute")
    assert world.decisions()[-1].rules == ["condition:max_requests_per_minute"]
    world.clock.advance(59)
    _denied(world.proxy("stock-api", "items/1"), "condition:max_requests_per_minute")
    world.clock.advance(1)  # the next minute
    _ok(world.proxy("stock-api", "items/1"))


def test_a_call_from_outside_the_source_ranges_is_denied_naming_them(world):
    _condition(world, source_cidrs=["127.0.0.2/32"])
    _denied(world.proxy("stock-api", "items/1"), "condition:source_cidrs")  # the test client is 127.0.0.1
    assert world.decisions()[-1].rules == ["condition:source_cidrs"]
    _ok(world.proxy("stock-api", "items/1", environ_base={"REMOTE_ADDR": "127.0.0.2"}))


def test_conditions_combine_and_each_failing_one_is_named(world):
    _condition(world, time_windows=[OFFICE_HOURS], source_cidrs=["127.0.0.2/32"])
    _denied(world.proxy("stock-api", "items/1"), "condition:source_cidrs")
    assert world.decisions()[-1].rules == ["condition:source_cidrs", "condition:time_window"]
    r = world.upstream_token()
    _denied(r, "condition:source_cidrs")
    assert r.get_json()["rules"] == ["condition:source_cidrs", "condition:time_window"]


def test_apply_refuses_a_source_range_wider_than_the_users(world):
    _pset(world)["conditions"] = {"source_cidrs": ["127.0.0.0/16", "10.0.0.0/8"]}
    errors = world.apply_errors(world.doc)
    line = yaml.safe_dump(world.doc, sort_keys=False).splitlines().index("    - 10.0.0.0/8") + 1
    assert errors.startswith(f"governance.yaml:{line}:"), errors  # pointed at the wider range
    assert "must lie within the ip_ranges of integration user 'order-sync'" in errors and "10.0.0.0/8" in errors
    # Nothing was applied: the stored set has no conditions and calls go through.
    _ok(world.proxy("stock-api", "items/1"))


def test_narrowing_the_users_ranges_below_a_stored_condition_is_refused(world):
    _condition(world, source_cidrs=["127.0.0.0/16"])
    find(world.doc, "integration_users", "order-sync")["ip_ranges"] = ["127.0.0.0/24"]
    errors = world.apply_errors(world.doc)
    assert "127.0.0.0/16" in errors and "order-sync" in errors


def test_conditions_are_stored_exported_and_reapplied_unchanged(world):
    from govern.config_as_code.specs import to_document
    from govern.store.landscape import load_current

    _condition(world, time_windows=[OFFICE_HOURS], max_requests_per_minute=5)
    assert world.apply().counts["update"] == 0  # the same document again: nothing to change
    with world.services.sessions() as s:
        exported = find(to_document(load_current(s).specs), "permission_sets", "shop-reader")
    assert exported["conditions"] == {"time_windows": [{**OFFICE_HOURS, "days": ["mon", "tue", "wed", "thu", "fri"]}],
                                      "max_requests_per_minute": 5}


# --- one observation per schema field (rows of tests/config_as_code/test_apply_to_runtime.py) -------------------

def _window_effect(world, field: str, value) -> None:
    """Saturday noon UTC is inside `sat 11:00-13:00 UTC`; changing `field` to `value` puts it outside."""
    window = {"days": ["sat"], "start": "11:00", "end": "13:00", "time_zone": "UTC"}
    _condition(world, time_windows=[window])
    _ok(world.proxy("stock-api", "items/1"))
    _condition(world, time_windows=[{**window, field: value}])
    _denied(world.proxy("stock-api", "items/1"), "condition:time_window")


def obs_condition_days(world):
    _window_effect(world, "days", ["sun"])


def obs_condition_start(world):
    _window_effect(world, "start", "12:01")


def obs_condition_end(world):
    _window_effect(world, "end", "12:00")  # the end is exclusive


def obs_condition_time_zone(world):
    _window_effect(world, "time_zone", "Asia/Tokyo")  # 21:00 there


def obs_condition_rate(world):
    _condition(world, max_requests_per_minute=1)
    _ok(world.proxy("stock-api", "items/1"))
    _denied(world.proxy("stock-api", "items/1"), "condition:max_requests_per_minute")


def obs_condition_source(world):
    _condition(world, source_cidrs=["127.0.0.1/32"])
    _ok(world.proxy("stock-api", "items/1"))
    _condition(world, source_cidrs=["127.0.0.2/32"])
    _denied(world.proxy("stock-api", "items/1"), "condition:source_cidrs")


# --- the rate counted in the shared state: its cost on the hot path -----------------------------------------

class _CountingSharedState:
    """The database's shared state (what `govern serve` uses without Redis), counting the rate counters' trips."""

    def __init__(self, inner):
        self._inner = inner
        self.kind = inner.kind
        self.trips: list[list[str]] = []

    def incr_each(self, keys, ttl):
        self.trips.append(list(keys))
        return self._inner.incr_each(keys, ttl)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture
def shared_world(settings, fake_upstream, resources):
    from govern.store.db import make_engine
    from govern.store.shared_state import DatabaseCache
    from tests.config_as_code.world import build_world

    engine = make_engine(settings.database_url)
    cache = _CountingSharedState(DatabaseCache(engine))
    built = build_world(settings, fake_upstream, resources, cache=cache)
    yield built, cache
    built.services.close()
    engine.dispose()


def test_the_shared_rate_costs_one_trip_per_decision_and_nothing_without_a_rate(shared_world):
    world, cache = shared_world
    world.clock.set(_at(MONDAY, 10, 0))
    for _ in range(3):  # no conditions: decided from the memo, no counter
        _ok(world.proxy("stock-api", "items/1"))
    _condition(world, time_windows=[OFFICE_HOURS])  # conditions, but no rate: still no counter
    _ok(world.proxy("stock-api", "items/1"))
    _ok(world.upstream_token())
    assert cache.trips == []

    # Two rated sets permit the same call: one trip counts both.
    _pset(world)["conditions"] = {"max_requests_per_minute": 2}
    world.doc["permission_sets"].append({"id": "stock-rated", "scopes": ["items.read"], "max_token_lifetime": "15m",
                                         "conditions": {"max_requests_per_minute": 3},
                                         "grants": [{"named_credential": "stock-api", "principal": "default",
                                                     "methods": ["GET"], "paths": ["/**"]}]})
    find(world.doc, "integration_users", "order-sync")["permission_sets"].append("stock-rated")
    world.apply()
    results = [world.proxy("stock-api", "items/1").status_code for _ in range(4)]
    assert results == [200, 200, 200, 403]  # stock-rated permits the third on its own
    assert len(cache.trips) == 4 and all(len(keys) == 2 for keys in cache.trips), cache.trips
    _denied(world.proxy("stock-api", "items/1"), "condition:max_requests_per_minute")
    world.clock.advance(60)  # the next minute: a new counter in the shared state
    _ok(world.proxy("stock-api", "items/1"))
