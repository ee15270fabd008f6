"""Seed section 16 against the fault-injecting upstream: system down, timeouts, 429, expired tokens;
plus retries with backoff and full jitter, per-credential timeouts and the circuit breaker."""
from __future__ import annotations

from tests.proxy.conftest import CALLER


def test_system_down_opens_the_breaker_then_fast_503_then_half_open_recovery(env, admin_token_for):
    env.configure(circuit_breaker={"failures": 3, "reset": 30},
                  retry={"attempts": 1})
    env.upstream.stop()
    for _ in range(3):
        r = env.client.get(env.url("x"), headers=CALLER)
        assert r.status_code == 503 and r.get_json()["code"] == "upstream_unavailable"
    # Open: a fast 503 without touching the network.
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 503 and r.get_json()["code"] == "circuit_open"
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    token = admin_token_for(env)
    state = env.client.get("/api/v1/systems/erp/breaker", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert state["state"] == "open"
    # The system comes back; the reset timeout passes (injected clock): half-open lets one probe through.
    env.upstream.start()
    env.clock.advance(31)
    listing = env.client.get("/api/v1/breakers", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert [b["state"] for b in listing["items"] if b["system"] == "erp"] == ["half_open"]
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 200 and env.upstream.count == 1
    state = env.client.get("/api/v1/systems/erp/breaker", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert state["state"] == "closed"


def test_a_failed_half_open_probe_opens_the_circuit_again(env):
    env.configure(circuit_breaker={"failures": 1, "reset": 10}, retry={"attempts": 1})
    env.upstream.fail_next(2, status=503)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 503
    assert env.client.get(env.url("x"), headers=CALLER).get_json()["code"] == "circuit_open"
    env.clock.advance(11)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 503  # the probe fails
    assert env.upstream.count == 2
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.get_json()["code"] == "circuit_open" and env.upstream.count == 2


def test_a_success_between_failures_starts_the_count_again(env):
    """Consecutive failures open the circuit: an answer in between forgets the ones before it."""
    env.configure(circuit_breaker={"failures": 3, "reset": 30}, retry={"attempts": 1})
    env.upstream.fail_next(2, status=503)
    assert [env.client.get(env.url("x"), headers=CALLER).status_code for _ in range(3)] == [503, 503, 200]
    env.upstream.fail_next(2, status=503)
    assert [env.client.get(env.url("x"), headers=CALLER).status_code for _ in range(3)] == [503, 503, 200]
    assert env.upstream.count == 6  # never open: every call reached the upstream


def test_a_call_on_a_closed_circuit_reads_the_shared_state_once_and_writes_nothing(env, monkeypatch):
    """The breaker's cost on every proxied call: one read of the system's `open` record and failure count
    together (one statement in the database, MGET on Redis), and no write while there is nothing to reset."""
    env.configure(circuit_breaker={"failures": 3, "reset": 30}, retry={"attempts": 1})
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200  # warm: token, landscape
    cache, seen = env.services.cache, []

    def counting(name, real):
        def counted(*args, **kw):
            if any("breaker" in str(a) for a in args):
                seen.append(name)
            return real(*args, **kw)
        return counted

    for name in ("get", "get_many", "set", "add", "delete", "delete_if", "incr", "incr_each"):
        monkeypatch.setattr(cache, name, counting(name, getattr(cache, name)))
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert seen == ["get_many"]
    env.upstream.fail_next(1, status=503)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 503
    seen.clear()
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200  # a failure to forget
    assert seen == ["get_many", "delete", "delete", "delete"]


def test_breaker_states_for_metrics(env):
    from govern.broker.proxy import breaker_states

    svc = env.services
    states = breaker_states(svc.proxy, sessions=svc.sessions, cache=svc.cache, clock=svc.clock)
    assert [(s["system"], s["state"]) for s in states] == [("erp", "closed")]


def test_breaker_api_needs_an_admin_token(env):
    assert env.client.get("/api/v1/breakers").status_code == 401


def test_timeout_is_retried_then_a_clean_504(env):
    env.configure(timeout=0.3, retry={"attempts": 2, "backoff": 0.1})
    env.upstream.slow_next(2, delay=5)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 504 and r.mimetype == "application/problem+json"
    assert r.get_json()["code"] == "upstream_timeout"
    assert env.upstream.count == 2  # one retry
    assert env.sleeps == [0.1]  # full jitter with random()=1.0: base * 2**0


def test_timeout_then_success_on_retry(env):
    env.configure(timeout=0.3)
    env.upstream.slow_next(1, delay=5)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 200 and env.upstream.count == 2


def test_timeout_is_per_named_credential(env):
    env.configure(timeout=0.3, retry={"attempts": 1})
    env.upstream.slow_next(1, delay=1.0)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 504
    env.configure(timeout=3.0, retry={"attempts": 1})
    env.upstream.slow_next(1, delay=0.5)
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200


def test_5xx_backoff_is_exponential_with_full_jitter(env):
    env.configure(retry={"attempts": 4, "backoff": 0.5, "max_backoff": 1.5})
    env.upstream.fail_next(3, status=502)
    env.proxy.random = iter([0.5, 1.0, 1.0]).__next__
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.sleeps == [0.25, 1.0, 1.5]  # rand * min(cap, base * 2**attempt)
    assert env.upstream.count == 4


def test_non_idempotent_post_is_not_retried(env):
    env.upstream.fail_next(1, status=503)
    r = env.client.post(env.url("orders"), data=b"{}", headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 503 and env.upstream.count == 1 and env.sleeps == []


def test_post_with_idempotency_key_is_retried(env):
    env.upstream.fail_next(1, status=503)
    r = env.client.post(env.url("orders"), data=b"{}", headers={**CALLER, "Content-Type": "application/json",
                                                                 "Idempotency-Key": "k-retry"})
    assert r.status_code == 201 and env.upstream.count == 2
    assert env.upstream.last().headers["Idempotency-Key"] == "k-retry"


def test_429_honours_retry_after_and_no_data_is_lost(env):
    env.upstream.rate_limit_next(2, retry_after="3")
    r = env.client.put(env.url("orders/7"), data=b'{"qty": 2}', headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 200
    assert env.sleeps == [3.0, 3.0]
    assert env.upstream.count == 3 and env.upstream.last().body == b'{"qty": 2}'


def test_429_beyond_the_max_wait_goes_back_to_the_caller_with_retry_after(env):
    env.upstream.rate_limit_next(1, retry_after="120")
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 429 and r.get_json()["code"] == "upstream_rate_limited"
    assert r.headers["Retry-After"] == "120" and env.sleeps == []
    # The caller retries later and the call goes through: nothing was lost.
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200


def test_429_for_a_non_idempotent_post_is_handed_back(env):
    env.upstream.rate_limit_next(1, retry_after="2")
    r = env.client.post(env.url("orders"), data=b"{}", headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and env.upstream.count == 1


def test_expired_token_401_invalidates_refreshes_and_retries_once(env):
    env.upstream.unauthorized_next(1)
    r = env.client.post(env.url("orders"), data=b"{}", headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 201
    assert env.tokens.invalidations == [("erp-api", "default")]
    assert [x.headers["Authorization"] for x in env.upstream.received] == [
        "Bearer upstream-token-1", "Bearer upstream-token-2"]


def test_a_second_401_is_returned_not_retried_forever(env):
    env.upstream.unauthorized_next(3)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 401 and env.upstream.count == 2 and len(env.tokens.invalidations) == 1
