"""Issue #16, refresh coordination, the way users meet it: HTTP against 4 gunicorn workers that share
PostgreSQL and Redis, the landscape from `govern apply`, a worker SIGKILLed in the middle of a refresh.

One gunicorn start serves every test of this module (they share its principals in order: each test leaves
its principal healthy or says so). Assertions are on upstream call counts, answers and persisted states,
never on durations.
"""
from __future__ import annotations

import os
import signal
import threading

import pytest
import requests
import sqlalchemy as sa

from govern.store.upstream_tables import RefreshJournal
from tests.broker_upstream.flight_live import concurrently, start_flight, stop_flight
from tests.procs import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
ROUNDS = 5


@pytest.fixture(scope="module")
def flight(tmp_path_factory, _pg_admin, _pg_template):
    import redis

    from tests.conftest import REDIS_URL, _pg_copy, _pg_drop, _pg_url

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001
        from tests.conftest import need

        need("Redis", f"{REDIS_URL}: {type(exc).__name__}")
    prefix = f"govern-test:{os.urandom(5).hex()}:"
    name = _pg_copy(_pg_admin, _pg_template)
    started = start_flight(tmp_path_factory.mktemp("flight"), _pg_url(name), REDIS_URL, prefix)
    yield started
    stop_flight(started)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    _pg_drop(_pg_admin, name)


def _journal(flight, credential: str) -> list[tuple[str, str | None]]:
    with flight.services.sessions() as s:
        return [(r.state, r.error) for r in s.execute(sa.select(RefreshJournal).where(
            RefreshJournal.credential == credential).order_by(RefreshJournal.id)).scalars()]


def _started_worker(flight, credential: str) -> int | None:
    with flight.services.sessions() as s:
        row = s.execute(sa.select(RefreshJournal.worker).where(
            RefreshJournal.credential == credential, RefreshJournal.state == "started")).scalar()
    return int(row.rsplit(":", 1)[1]) if row else None


def test_200_rejected_token_reports_over_4_workers_make_one_upstream_call(flight):
    govern = flight.govern_token()
    held = flight.token(govern, "shop-orders")
    assert held.status_code == 200, held.text
    held = held.json()["access_token"]
    flight.cc.inject("delay", grant="client_credentials", delay=0.3, times=None)  # widens the race window
    try:
        for _ in range(ROUNDS):
            before = flight.cc.count("client_credentials")
            answers = concurrently(200, lambda: flight.token(govern, "shop-orders", rejected=held))
            assert sorted({getattr(a, "status_code", repr(a)) for a in answers}, key=str) == [200], \
                [a.text if hasattr(a, "text") else repr(a) for a in answers if getattr(a, "status_code", 0) != 200][:3]
            tokens = {a.json()["access_token"] for a in answers}
            assert len(tokens) == 1 and held not in tokens
            assert flight.cc.count("client_credentials") - before == 1
            held = tokens.pop()
    finally:
        flight.cc.clear_faults()


def test_200_proxied_calls_that_meet_a_401_make_one_refresh(flight):
    govern = flight.govern_token()
    first = flight.proxy(govern, "shop-orders")
    assert first.status_code == 200, first.text
    flight.cc.inject("delay", grant="client_credentials", delay=0.3, times=None)
    try:
        for _ in range(ROUNDS):
            before = flight.cc.count("client_credentials")
            assert flight.cc.revoke_access_tokens() >= 1  # the token govern holds is refused from now on
            answers = concurrently(200, lambda: flight.proxy(govern, "shop-orders"))
            assert [getattr(a, "status_code", repr(a)) for a in answers].count(200) == 200, \
                [a.text if hasattr(a, "text") else repr(a) for a in answers if getattr(a, "status_code", 0) != 200][:3]
            assert flight.cc.count("client_credentials") - before == 1
    finally:
        flight.cc.clear_faults()


def _kill_mid_refresh(flight, fakes_and_names: list[tuple[object, str, str]]) -> None:
    """Start one refresh per (fake, named credential, credential), hang each at the fake after it rotated
    the refresh token, SIGKILL the gunicorn workers making them, then let the fakes go."""
    govern = flight.govern_token()
    for fake, _, _ in fakes_and_names:
        fake.inject("stall_after_commit", grant="refresh_token")
    callers = []
    for _, name, _ in fakes_and_names:
        def call(name=name):
            try:
                flight.token(govern, name)
            except requests.RequestException:
                pass  # its worker is killed: the caller sees the connection drop

        callers.append(threading.Thread(target=call))
        callers[-1].start()
    for fake, _, credential in fakes_and_names:
        wait_for(lambda: fake.committed["refresh_token"] == 1, what="the upstream rotated")
    pids = {wait_for(lambda c=credential: _started_worker(flight, c), what="the journal names the worker")
            for _, _, credential in fakes_and_names}
    workers = flight.worker_pids()
    assert pids <= workers, (pids, workers)  # gunicorn workers, never the master
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for thread in callers:
        thread.join(60)
    for fake, _, _ in fakes_and_names:
        fake.release()


def test_sigkill_mid_refresh_recovers_within_the_grace_or_needs_reconnect_without_it(flight):
    """One kill, two principals: alice's upstream keeps a rotated refresh token valid for 30 s, bob's does
    not. The dead worker's refresh lease lapses within one lease (5 s), far inside alice's grace."""
    govern = flight.govern_token()
    _kill_mid_refresh(flight, [(flight.grace, "grace-orders", "shop-rt-grace"),
                               (flight.strict, "strict-orders", "shop-rt-strict")])
    assert flight.grace.count("refresh_token") == 1 and flight.strict.count("refresh_token") == 1
    assert _journal(flight, "shop-rt-grace") == [("started", None)]

    # alice: many requests on every worker; one of them retries with the stored token inside the grace.
    answers = concurrently(20, lambda: flight.token(govern, "grace-orders"))
    assert [getattr(a, "status_code", repr(a)) for a in answers].count(200) == 20, \
        [a.text if hasattr(a, "text") else repr(a) for a in answers][:3]
    tokens = {a.json()["access_token"] for a in answers}
    assert len(tokens) == 1 and flight.grace.access_token_valid(tokens.pop())
    assert flight.grace.count("refresh_token") == 2  # the killed call, and exactly one recovery call
    assert _journal(flight, "shop-rt-grace") == [("failed", "reconciled"), ("succeeded", None)]

    # bob: the same retry meets invalid_grant. One alert, the principal is marked, and no more calls.
    answers = concurrently(20, lambda: flight.token(govern, "strict-orders"))
    problems = {(a.status_code, a.json()["code"]) for a in answers}
    assert problems == {(409, "principal_needs_reconnect")}
    for _ in range(50):
        resp = flight.token(govern, "strict-orders") if _ % 2 else flight.proxy(govern, "strict-orders")
        assert (resp.status_code, resp.json()["code"]) == (409, "principal_needs_reconnect")
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert flight.strict.count("refresh_token") == 2  # the killed call and the one that found it dead
    assert _journal(flight, "shop-rt-strict") == [("failed", "invalid_grant"), ("failed", "invalid_grant")]
    alerts = flight.alerts.named("alert.principal_needs_reconnect")
    assert len(alerts) == 1 and alerts[0]["payload"]["principal"] == "bob"
    assert not flight.alerts.named("alert.principal_reconnected")

    # The state is visible in the API (and the console reads the same column).
    from govern.store.admins import create_admin, issue_token

    create_admin(flight.services.sessions, "flight-admin", "correct horse battery staple", "admin")
    admin = issue_token(flight.services.sessions, "flight-admin")
    cred = requests.get(f"{flight.base}/api/v1/credentials/shop-rt-strict",
                        headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert cred.status_code == 200, cred.text
    (bob,) = cred.json()["principals"]
    assert bob["needs_reconnect"] is True and bob["needs_reconnect_since"]
    metrics = requests.get(flight.base + "/metrics", timeout=30).text
    assert 'govern_principals_needing_reconnect{credential="shop-rt-strict"} 1.0' in metrics
    assert 'govern_principals_needing_reconnect{credential="shop-rt-grace"} 0.0' in metrics

    # Reconnecting (a new refresh token through the CLI) clears it, with one "recovered" alert.
    done = flight.govern("secrets", "put", "shop-rt-strict", "--principal", "bob", "--field", "refresh_token",
                         input=flight.strict.issue_refresh_token("rt-client", "bob"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(flight.alerts.named("alert.principal_reconnected")) == 1
    metrics = requests.get(flight.base + "/metrics", timeout=30).text
    assert 'govern_principals_needing_reconnect{credential="shop-rt-strict"} 0.0' in metrics
    resp = flight.token(govern, "strict-orders")
    assert resp.status_code == 200, resp.text
    assert flight.strict.count("refresh_token") == 3
    assert len(flight.alerts.named("alert.principal_needs_reconnect")) == 1
