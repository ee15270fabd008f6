"""The system contract's `rate_limit_per_minute`: govern's calls to the system in one minute of its clock,
across its processes (the shared state), every upstream attempt counted. Past it: 429 `system_rate_limited`
with a Retry-After to the next minute, and no upstream call."""
from __future__ import annotations

from tests.proxy.conftest import CALLER


def test_past_the_rate_a_call_is_refused_until_the_next_minute(env):
    env.configure(rate_limit_per_minute=3, retry={"attempts": 1})
    env.clock.advance(60 - env.clock.now().timestamp() % 60 + 15)  # 15 s into a minute
    assert [env.client.get(env.url("x"), headers=CALLER).status_code for _ in range(3)] == [200, 200, 200]
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 429 and r.get_json()["code"] == "system_rate_limited"
    assert r.headers["Retry-After"] == "45" and "3 calls per minute" in r.get_json()["detail"]
    assert env.upstream.count == 3  # the refused call never reached the system
    env.clock.advance(45)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200


def test_retries_count_against_the_rate_and_stop_when_it_is_used_up(env):
    env.configure(rate_limit_per_minute=2, retry={"attempts": 5})
    env.clock.advance(60 - env.clock.now().timestamp() % 60)
    env.upstream.fail_next(5, status=503)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 503 and env.upstream.count == 2  # the first attempt and one retry
    assert env.client.get(env.url("x"), headers=CALLER).get_json()["code"] == "system_rate_limited"


def test_a_refused_call_costs_no_daily_budget(env):
    env.configure(rate_limit_per_minute=1, daily_api_budget=100)
    env.clock.advance(60 - env.clock.now().timestamp() % 60)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 429
    assert env.proxy.budget.used("erp") == 1


def test_two_processes_share_one_rate(env, settings, upstream):
    """Another govern process (its own services and app on the same database or Redis) draws from the same
    minute's count."""
    from tests.proxy.conftest import build_env

    env.configure(rate_limit_per_minute=2, retry={"attempts": 1})
    env.clock.advance(60 - env.clock.now().timestamp() % 60)  # at the start of a minute
    other = build_env(settings, upstream)
    try:
        other.clock._now = env.clock.now()  # the same minute on both
        assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
        assert other.client.get(other.url("x"), headers=CALLER).status_code == 200
        assert env.client.get(env.url("x"), headers=CALLER).get_json()["code"] == "system_rate_limited"
        assert other.client.get(other.url("x"), headers=CALLER).get_json()["code"] == "system_rate_limited"
    finally:
        other.services.close()


def test_without_a_rate_nothing_is_counted(env, monkeypatch):
    cache, seen = env.services.cache, []
    real = cache.incr_each
    monkeypatch.setattr(cache, "incr_each", lambda keys, ttl: seen.extend(keys) or real(keys, ttl))
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert not [k for k in seen if k.startswith("proxy:rate:")]


def test_a_call_the_daily_budget_refuses_is_not_counted_against_the_minute(env):
    env.configure(rate_limit_per_minute=5, daily_api_budget=1, retry={"attempts": 1})
    env.clock.advance(60 - env.clock.now().timestamp() % 60)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    refused = [env.client.get(env.url("x"), headers=CALLER) for _ in range(3)]
    assert [r.get_json()["code"] for r in refused] == ["budget_exhausted"] * 3
    minute = int(env.clock.now().timestamp() // 60)
    assert env.services.cache.get(f"proxy:rate:erp:{minute}") == b"1"  # the one call made, not four
    assert env.upstream.count == 1
