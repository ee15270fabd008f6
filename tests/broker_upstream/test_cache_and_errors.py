"""The sealed token cache (hits, leeway) and how upstream failures map into govern's error tree."""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from govern.broker.upstream.errors import UpstreamInvalidGrant, UpstreamTimeout
from govern.errors import RateLimited, UpstreamUnavailable
from govern.store.upstream_tables import RefreshJournal
from tests.broker_upstream.conftest import put_secret, wire_credential


def test_many_gets_make_one_upstream_call(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream)
    tokens = {broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
              .access_token.reveal() for _ in range(25)}
    assert len(tokens) == 1 and fake_upstream.count() == 1


def test_scopes_are_part_of_the_key_in_any_order(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, scopes=("orders.read", "orders.write"))
    src = broker_services.upstream_tokens
    a = src.get_token(names["named_credential"], "default", ("orders.read", "orders.write"))
    b = src.get_token(names["named_credential"], "default", ("orders.write", "orders.read"))
    c = src.get_token(names["named_credential"], "default", ("orders.read",))
    assert a.access_token == b.access_token and a.access_token != c.access_token
    assert fake_upstream.count() == 2


def test_leeway_refreshes_before_expiry(broker_services, fake_upstream, clock):
    fake_upstream.access_token_ttl = 90  # leeway: min(60 s (settings.token_leeway_seconds), 10% of 90 s) = 9 s
    names = wire_credential(broker_services, fake_upstream)
    src = broker_services.upstream_tokens
    first = src.get_token(names["named_credential"], "default", ("orders.read",))
    clock.advance(20)  # 70 s left: still fresh
    assert src.get_token(names["named_credential"], "default", ("orders.read",)).access_token == first.access_token
    clock.advance(60)  # 10 s left: still fresh
    assert src.get_token(names["named_credential"], "default", ("orders.read",)).access_token == first.access_token
    clock.advance(2)  # 8 s left: inside the leeway
    second = src.get_token(names["named_credential"], "default", ("orders.read",))
    assert second.access_token != first.access_token and fake_upstream.count() == 2


def test_invalidate_forces_a_new_token(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream)
    src = broker_services.upstream_tokens
    src.get_token(names["named_credential"], "default", ("orders.read",))
    src.invalidate(names["named_credential"], "default", ("orders.read",))
    src.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.count() == 2


def test_threads_in_one_process_share_one_call(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream)
    fake_upstream.inject("delay", delay=0.3)  # keep the first call in flight while the others arrive
    barrier = threading.Barrier(20)
    results, errors = [], []

    def call():
        barrier.wait()
        try:
            results.append(broker_services.upstream_tokens.get_token(names["named_credential"], "default",
                                                                      ("orders.read",)).access_token.reveal())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(results)) == 1 and fake_upstream.count() == 1


def test_429_is_rate_limited_with_retry_after(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream)
    fake_upstream.inject("429", retry_after=17)
    with pytest.raises(RateLimited) as err:
        broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "17"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_upstream_unavailable(broker_services, fake_upstream, status):
    names = wire_credential(broker_services, fake_upstream)
    fake_upstream.inject("5xx", status=status)
    with pytest.raises(UpstreamUnavailable) as err:
        broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert err.value.status == 503 and err.value.code == "upstream_unavailable"
    # The fault was for one call: the next request works.
    assert broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))


def test_slow_upstream_is_bounded_by_the_named_credentials_timeout(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, timeout=0.3)
    fake_upstream.inject("delay", delay=2.0)
    with pytest.raises(UpstreamUnavailable):
        broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))


def test_invalid_grant_marks_the_principal_needs_reconnect_with_one_alert(broker_services, fake_upstream, caplog):
    from govern.store.tables import Principal

    events = []
    broker_services.upstream_tokens.notify = lambda event, payload: events.append((event, payload))
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    put_secret(broker_services, names["credential"], "default", "refresh_token", "rt-revoked-upstream")
    with pytest.raises(UpstreamInvalidGrant) as err:
        broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    problem = err.value.to_problem()
    assert (problem["code"], problem["status"]) == ("principal_needs_reconnect", 409)
    assert "rt-revoked" not in str(problem)
    alerts = [r for r in caplog.records if getattr(r, "alert", None) == "principal_needs_reconnect"]
    assert alerts and "rt-revoked" not in alerts[0].getMessage()
    assert [e for e, _ in events] == ["alert.principal_needs_reconnect"] and "rt-revoked" not in str(events)
    calls = fake_upstream.count("refresh_token")
    for _ in range(3):  # no further upstream call until it is reconnected, and no second alert
        with pytest.raises(UpstreamInvalidGrant) as again:
            broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
        assert again.value.code == "principal_needs_reconnect"
    assert fake_upstream.count("refresh_token") == calls and len(events) == 1
    with broker_services.sessions() as s:
        assert [r.state for r in s.execute(sa.select(RefreshJournal)).scalars()] == ["failed"]
        assert s.execute(sa.select(Principal.needs_reconnect_at)).scalar() is not None


def test_waiters_time_out_cleanly(broker_services, fake_upstream):
    from govern.broker.upstream.single_flight import LocalLocks

    locks = LocalLocks()
    with locks.hold("k", 1):
        with pytest.raises(UpstreamTimeout) as err:
            with locks.hold("k", 0.05):
                pass
    assert err.value.status == 503 and err.value.code == "upstream_token_wait_timeout"
