"""Maintenance windows (seed practice 19): refused with Retry-After, or queued and delivered in order
afterwards; calls that keep failing go to the dead-letter queue (`govern dlq`)."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlmodel import select

from govern.broker.proxy.maintenance import window_end
from govern.broker.proxy.queue import MAX_ATTEMPTS, deliver_queued
from govern.store.proxy_tables import DeadLetter, QueuedCall
from tests.proxy.conftest import API_KEY, CALLER, use_api_key

UTC = dt.UTC
WINDOW = [{"day": "tue", "start": "11:00", "end": "13:00"}]  # the fake clock is Tuesday 12:00 UTC
AFTER = dt.datetime(2026, 11, 24, 13, 0, 1, tzinfo=UTC)


def test_window_end():
    assert window_end(WINDOW, dt.datetime(2026, 11, 24, 12, 0, tzinfo=UTC)) == dt.datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    assert window_end(WINDOW, dt.datetime(2026, 11, 24, 13, 0, tzinfo=UTC)) is None
    assert window_end(WINDOW, dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)) is None
    overnight = [{"day": "sun", "start": "22:00", "end": "02:00"}]
    assert window_end(overnight, dt.datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) == dt.datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert window_end(overnight, dt.datetime(2026, 11, 22, 23, 0, tzinfo=UTC)) == dt.datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_during_a_window_calls_get_503_with_retry_after_to_its_end(env):
    env.configure(maintenance_windows=WINDOW)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 503 and r.get_json()["code"] == "maintenance_window"
    assert r.headers["Retry-After"] == "3600" and env.upstream.count == 0


def _queue_mode(env):
    use_api_key(env)
    env.configure(maintenance_windows=WINDOW, during_maintenance="queue")


def test_calls_are_queued_then_delivered_in_order_after_the_window(env):
    _queue_mode(env)
    locations = []
    for i in range(3):
        r = env.client.post(env.url("orders"), data=json.dumps({"n": i}),
                            headers={**CALLER, "Content-Type": "application/json", "X-Correlation-ID": f"corr-{i}",
                                     "Idempotency-Key": f"evt-{i}"})
        assert r.status_code == 202
        locations.append(r.headers["Location"])
    assert env.upstream.count == 0
    status = env.client.get(locations[0], headers=CALLER).get_json()
    assert status["status"] == "queued"
    # Nothing is stored that could authenticate: no credential, no caller token.
    with env.services.sessions() as s:
        rows = s.exec(select(QueuedCall)).all()
        dump = json.dumps([r.model_dump(mode="json", exclude={"body"}) for r in rows]) + "".join(
            r.body.decode() for r in rows)
    assert API_KEY not in dump and "caller-order-sync" not in dump and "Authorization" not in dump
    # Still inside the window: the worker delivers nothing.
    assert deliver_queued(env.services.proxy.queued, env.clock.now()) == []
    env.clock.set(AFTER)
    outcomes = deliver_queued(env.services.proxy.queued, AFTER)
    assert [o.ok for o in outcomes] == [True, True, True]
    assert [json.loads(x.body)["n"] for x in env.upstream.received] == [0, 1, 2]
    got = env.upstream.received[0]
    assert got.headers["X-Api-Key"] == API_KEY and got.headers["X-Correlation-Id"] == "corr-0"
    assert got.headers["Idempotency-Key"] == "evt-0"
    assert env.client.get(locations[2], headers=CALLER).get_json()["status"] == "delivered"
    # Another caller cannot read the status.
    assert env.client.get(locations[0], headers={"Authorization": "Bearer caller-other"}).status_code == 404
    assert deliver_queued(env.services.proxy.queued, AFTER) == []


def test_a_failing_call_holds_later_ones_back_and_ends_in_the_dead_letter_queue(env):
    _queue_mode(env)
    for i in range(2):
        env.client.post(env.url("orders"), data=json.dumps({"n": i}), headers={**CALLER, "Content-Type": "application/json"})
    env.configure(retry={"attempts": 1}, circuit_breaker={"failures": 100})
    env.upstream.fail_next(MAX_ATTEMPTS, status=500)
    now = AFTER
    for attempt in range(MAX_ATTEMPTS):
        outcomes = deliver_queued(env.services.proxy.queued, now)
        assert [o.ok for o in outcomes] == [False]  # the second call waits behind the first
        now += dt.timedelta(hours=2)
    assert "dead-letter" in outcomes[0].detail
    outcomes = deliver_queued(env.services.proxy.queued, now)
    assert [o.ok for o in outcomes] == [True]
    assert json.loads(env.upstream.last().body)["n"] == 1
    with env.services.sessions() as s:
        dead = s.exec(select(DeadLetter)).all()
    assert len(dead) == 1 and dead[0].attempts == MAX_ATTEMPTS and dead[0].reason == "upstream_unavailable"


@pytest.fixture
def dlq_cli(env, monkeypatch):
    from govern.cli import cli, dlq

    monkeypatch.setattr(dlq, "services", lambda **kw: env.services)
    dlq.register(cli) if "dlq" not in cli.commands else None

    def invoke(*args):
        return CliRunner().invoke(cli, ["dlq", *args], catch_exceptions=False)

    return invoke


def _bury_one(env, n=0):
    _queue_mode(env)
    env.client.post(env.url("orders"), data=json.dumps({"n": n}), headers={**CALLER, "Content-Type": "application/json"})
    env.configure(retry={"attempts": 1}, circuit_breaker={"failures": 100})
    env.upstream.fail_next(MAX_ATTEMPTS, status=503)
    now = AFTER
    for _ in range(MAX_ATTEMPTS):
        deliver_queued(env.services.proxy.queued, now)
        now += dt.timedelta(hours=2)
    with env.services.sessions() as s:
        return s.exec(select(DeadLetter)).one().id


def test_dlq_list_retry_drop(env, dlq_cli):
    assert "empty" in dlq_cli("list").output
    dead_id = _bury_one(env)
    env.clock.set(AFTER + dt.timedelta(days=1))
    out = dlq_cli("list").output
    assert f"{dead_id}\terp-api\tPOST /orders" in out and API_KEY not in out
    env.upstream.fail_next(1, status=503)
    result = dlq_cli("retry", str(dead_id))
    assert result.exit_code == 1 and f"{dead_id}: failed" in result.output
    result = dlq_cli("retry", str(dead_id), "999")
    assert result.exit_code == 1 and f"{dead_id}: ok: delivered (201)" in result.output and "999: failed" in result.output
    assert "empty" in dlq_cli("list").output


def test_dlq_drop(env, dlq_cli):
    dead_id = _bury_one(env)
    result = dlq_cli("drop", str(dead_id))
    assert result.exit_code == 0 and f"{dead_id}: ok: dropped" in result.output
    assert dlq_cli("drop", str(dead_id)).exit_code == 1


def test_deliveries_are_logged_with_the_upstream_status(env):
    _queue_mode(env)
    env.client.post(env.url("orders"), data="{}", headers={**CALLER, "Content-Type": "application/json",
                                                           "X-Correlation-ID": "corr-q"})
    deliver_queued(env.services.proxy.queued, AFTER)
    record = env.log.records[-1]
    assert record["upstream_status"] == 201 and record["correlation_id"] == "corr-q"
    assert record["request"].caller.integration_user == "order-sync"


def test_dlq_deliver_runs_the_worker_step_once(env, dlq_cli):
    _queue_mode(env)
    env.client.post(env.url("orders"), data="{}", headers={**CALLER, "Content-Type": "application/json"})
    assert "nothing is due" in dlq_cli("deliver").output  # still inside the window
    env.clock.set(AFTER)
    result = dlq_cli("deliver")
    assert result.exit_code == 0 and "ok: delivered (201)" in result.output
    assert env.upstream.count == 1


def test_a_call_no_longer_allowed_at_delivery_goes_to_the_dead_letter_queue_unsent(env):
    _queue_mode(env)
    r = env.client.post(env.url("orders"), data="{}", headers={**CALLER, "Content-Type": "application/json",
                                                               "X-Correlation-ID": "corr-revoked"})
    assert r.status_code == 202
    env.decider.allow = False  # e.g. the integration user was suspended while the call waited
    env.clock.set(AFTER)
    outcomes = deliver_queued(env.services.proxy.queued, AFTER)
    assert [o.ok for o in outcomes] == [False] and "refused at delivery (forbid-test)" in outcomes[0].detail
    assert env.upstream.count == 0
    # Decided again as the caller it came from: same user, source address and token scopes.
    asked = env.decider.requests[-1]
    assert asked.caller.integration_user == "order-sync" and asked.caller.source_ip == "127.0.0.1"
    assert asked.caller.scopes == ("orders.read",) and asked.method == "POST" and asked.path == "/orders"
    record = env.log.records[-1]
    assert record["decision"].allowed is False and record["correlation_id"] == "corr-revoked"
    with env.services.sessions() as s:
        dead = s.exec(select(DeadLetter)).one()
        assert dead.reason == "forbid-test" and dead.source_ip == "127.0.0.1" and dead.scopes == ["orders.read"]
    # Restored: an operator's retry decides again, and now delivers.
    env.decider.allow = True
    from govern.broker.proxy.queue import dlq_retry

    assert dlq_retry(env.services.proxy.queued, dead.id).ok and env.upstream.count == 1


def test_deliveries_count_against_the_daily_budget_and_wait_for_the_next_day(env):
    _queue_mode(env)
    env.configure(daily_api_budget=1)
    for i in range(2):
        env.client.post(env.url("orders"), data=json.dumps({"n": i}), headers={**CALLER, "Content-Type": "application/json"})
    env.clock.set(AFTER)
    outcomes = deliver_queued(env.services.proxy.queued, AFTER)
    assert [o.ok for o in outcomes] == [True, False] and "daily budget" in outcomes[1].detail
    assert env.upstream.count == 1 and env.proxy.budget.used("erp") == 1
    with env.services.sessions() as s:
        waiting = s.exec(select(QueuedCall).where(QueuedCall.status == "queued")).one()
        assert waiting.attempts == 0  # waiting for the budget is not a failed attempt
    assert deliver_queued(env.services.proxy.queued, AFTER + dt.timedelta(hours=1)) == []  # not due before midnight
    next_day = dt.datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)
    env.clock.set(next_day)
    assert [o.ok for o in deliver_queued(env.services.proxy.queued, next_day)] == [True]
    assert json.loads(env.upstream.last().body)["n"] == 1


def test_a_delivery_refused_by_an_open_breaker_costs_no_budget(env):
    _queue_mode(env)
    env.configure(daily_api_budget=10, retry={"attempts": 1},
                  circuit_breaker={"failures": 1, "reset": 3600})
    for i in range(2):
        env.client.post(env.url("orders"), data=json.dumps({"n": i}), headers={**CALLER, "Content-Type": "application/json"})
    env.clock.set(AFTER)
    env.upstream.fail_next(1, status=503)
    assert [o.ok for o in deliver_queued(env.services.proxy.queued, AFTER)] == [False]  # the 503 opens the breaker
    assert env.proxy.budget.used("erp") == 1
    later = AFTER + dt.timedelta(minutes=10)  # past the first retry delay (30 s), well before the reset (1 h)
    outcomes = deliver_queued(env.services.proxy.queued, later)
    assert [o.ok for o in outcomes] == [False] and "circuit_open" in outcomes[0].detail
    assert env.proxy.budget.used("erp") == 1 and env.upstream.count == 1


def test_dlq_list_json_carries_each_dead_letter_and_no_call_content(env, dlq_cli):
    assert json.loads(dlq_cli("list", "--json").stdout) == []
    dead_id = _bury_one(env)
    result = dlq_cli("list", "--json")
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.stdout)
    assert set(item) == {"id", "named_credential", "system", "caller", "principal", "method", "path", "attempts",
                         "last_status", "reason", "correlation_id", "created_at"}
    assert (item["id"], item["named_credential"], item["method"], item["path"], item["reason"]) == (
        dead_id, "erp-api", "POST", "/orders", "upstream_unavailable")
    assert item["attempts"] == MAX_ATTEMPTS and item["correlation_id"]
    assert API_KEY not in result.stdout and '"n"' not in result.stdout  # neither the injected key nor the body
