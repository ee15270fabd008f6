"""Daily API budget per system (the contract's daily limit): an alert at 80%, refusal at 100%."""
from __future__ import annotations

import datetime as dt

from govern.broker.proxy.budget import seconds_to_end_of_day
from tests.proxy.conftest import CALLER


def test_alert_once_at_80_percent_and_429_at_100_percent(env):
    env.configure(daily_api_budget=5)
    for i in range(5):
        assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
        assert len(env.notifier.events) == (1 if i >= 3 else 0)  # the 4th call reaches 80%
    event, payload = env.notifier.events[0]
    assert event == "api_budget_threshold" and payload["system"] == "erp" and payload["used"] == 4
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 429 and r.get_json()["code"] == "budget_exhausted"
    assert int(r.headers["Retry-After"]) == 12 * 3600  # the fake clock is at noon UTC
    assert env.upstream.count == 5 and len(env.notifier.events) == 1


def test_overdraft_when_the_decision_allows_it(env):
    env.configure(daily_api_budget=1)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 429
    env.decider.overdraft = True
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200


def test_the_budget_resets_at_the_end_of_the_utc_day(env):
    env.configure(daily_api_budget=1)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 429
    env.clock.advance(12 * 3600)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200


def test_no_budget_means_no_counting(env):
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.proxy.budget.used("erp") == 0


def test_seconds_to_end_of_day():
    assert seconds_to_end_of_day(dt.datetime(2026, 1, 1, 23, 59, 30, tzinfo=dt.UTC)) == 30


def test_each_retry_is_another_call_against_the_budget(env):
    env.configure(daily_api_budget=10)
    env.upstream.fail_next(2, status=503)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.upstream.count == 3 and env.proxy.budget.used("erp") == 3


def test_retries_stop_when_the_budget_is_used_up(env):
    env.configure(daily_api_budget=2)
    env.upstream.fail_next(5, status=503)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 503  # the upstream's own answer: govern did not retry past the budget
    assert env.upstream.count == 2 and env.proxy.budget.used("erp") == 2
    assert env.client.get(env.url("x"), headers=CALLER).get_json()["code"] == "budget_exhausted"


def test_a_401_without_budget_for_the_retry_is_handed_back_with_the_token_dropped(env):
    env.configure(daily_api_budget=1)
    env.upstream.unauthorized_next(1)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 401 and env.upstream.count == 1  # no budget left for the retry
    assert env.tokens.invalidations == [("erp-api", "default")]  # the next call starts with a fresh token
