"""Real Redis and real PostgreSQL: no cleartext at rest, single flight across processes, a killed worker."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import time

import pytest
import sqlalchemy as sa

from govern.broker.upstream.token_cache import cache_key
from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.store.upstream_tables import RefreshJournal
from govern.secrets.service import secret_ref_name
from tests.broker_upstream.conftest import put_secret, wire_credential

pytestmark = [pytest.mark.postgres]


def _services(tmp_path, database_url, redis_url=None, redis_prefix="govern:", **kw):
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from tests.fakes.secret_store import MemorySecretStore

    home = tmp_path / "instance"
    home.mkdir(exist_ok=True)
    settings = load_settings({}, home=home, database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix)
    svc = build_services(settings, **kw)
    svc.secret_store = MemorySecretStore()
    return svc


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.02)


@pytest.mark.redis
def test_redis_holds_only_sealed_tokens(tmp_path, postgres_url, redis_url, redis_prefix, fake_upstream):
    import redis

    svc = _services(tmp_path, postgres_url, redis_url, redis_prefix)
    try:
        names = wire_credential(svc, fake_upstream)
        token = svc.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",)).access_token.reveal()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=redis_prefix + "*"))
        assert keys
        for key in keys:
            value = client.get(key) or b""
            assert token.encode() not in key and token.encode() not in value
            assert b"at_" not in value
        # A second process of the same instance (same instance key) reads the sealed entry: no second call.
        other = _services(tmp_path, postgres_url, redis_url, redis_prefix)
        try:
            assert other.upstream_tokens.get_token(names["named_credential"], "default",
                                                   ("orders.read",)).access_token.reveal() == token
        finally:
            other.close()
        assert fake_upstream.count() == 1
    finally:
        for key in redis.Redis.from_url(redis_url).scan_iter(match=redis_prefix + "*"):
            redis.Redis.from_url(redis_url).delete(key)
        svc.close()


def test_database_rows_hold_only_sealed_tokens(tmp_path, postgres_url, fake_upstream):
    svc = _services(tmp_path, postgres_url)
    try:
        names = wire_credential(svc, fake_upstream, protocol="oauth2_refresh_token")
        put_secret(svc, names["credential"], "default", "refresh_token", fake_upstream.issue_refresh_token("erp-client"))
        token = svc.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",)).access_token.reveal()
        with svc.engine.connect() as conn:
            dump = repr([tuple(r) for t in ("upstream_token_lock", "refresh_journal", "secret_ref", "secret_version")
                         for r in conn.execute(sa.text(f"SELECT * FROM {t}"))])
        assert token not in dump and "rt_" not in dump and "at_" not in dump
    finally:
        svc.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgres-only"])
def test_200_concurrent_gets_over_4_processes_make_one_upstream_call(tmp_path, postgres_url, redis_prefix, backend,
                                                                     fake_upstream, request):
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    svc = _services(tmp_path, postgres_url, redis_url, redis_prefix)
    try:
        names = wire_credential(svc, fake_upstream)
        # An expired token sits in the cache (sealed), as after a quiet night.
        key = cache_key(names["named_credential"], "default", ("orders.read",))
        expired = UpstreamToken(Secret("at_expired"), "Bearer", svc.clock.now() - dt.timedelta(seconds=5))
        svc.cache.set(key, svc.upstream_tokens.tokens.seal(key, expired)[0], 60)
        fake_upstream.inject("delay", delay=0.5, times=None)  # a slow upstream widens the race window
        config = {"env": {"home": str(tmp_path / "instance"), "database_url": postgres_url, "redis_url": redis_url,
                          "redis_prefix": redis_prefix, "store_data": svc.secret_store.data},
                  "named_credential": names["named_credential"], "threads": 50}
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_many_gets, args=(config, start, results)) for _ in range(4)]
        [p.start() for p in procs]
        start.set()
        outcomes = [results.get(timeout=120) for _ in procs]
        [p.join(30) for p in procs]
        assert [o["errors"] for o in outcomes] == [[], [], [], []]
        assert sum(o["ok"] for o in outcomes) == 200
        assert len({t for o in outcomes for t in o["tokens"]}) == 1
        assert fake_upstream.count("client_credentials") == 1
    finally:
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            for k in client.scan_iter(match=redis_prefix + "*"):
                client.delete(k)
        svc.close()


def _many_gets(config, start, results):
    from tests.broker_upstream.workers import many_gets

    many_gets(config, start, results)


def _one_get(config):
    from tests.broker_upstream.workers import one_get

    one_get(config)


@pytest.mark.slow
def test_worker_killed_after_the_upstream_rotated_does_not_lock_out(tmp_path, postgres_url, fake_upstream):
    fake_upstream.refresh_grace_seconds = 120
    svc = _services(tmp_path, postgres_url)
    try:
        names = wire_credential(svc, fake_upstream, protocol="oauth2_refresh_token")
        old = fake_upstream.issue_refresh_token("erp-client")
        put_secret(svc, names["credential"], "default", "refresh_token", old)
        fake_upstream.inject("stall_after_commit", grant="refresh_token")
        config = {"env": {"home": str(tmp_path / "instance"), "database_url": postgres_url, "redis_url": None,
                          "redis_prefix": "govern:", "store_data": svc.secret_store.data},
                  "named_credential": names["named_credential"]}
        ctx = multiprocessing.get_context("spawn")
        worker = ctx.Process(target=_one_get, args=(config,))
        worker.start()
        # The upstream has rotated the refresh token; the worker has not stored or answered anything yet.
        _wait_for(lambda: fake_upstream.committed["refresh_token"] == 1)
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(30)
        fake_upstream.release()
        assert fake_upstream.refresh_tokens[old].revoked_at is not None  # rotated: only the grace period saves it
        with svc.sessions() as s:
            assert [r.state for r in s.execute(sa.select(RefreshJournal)).scalars()] == ["started"]

        token = svc.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
        assert fake_upstream.access_token_valid(token.access_token.reveal())
        with svc.sessions() as s:
            states = [(r.state, r.error) for r in s.execute(sa.select(RefreshJournal).order_by(RefreshJournal.id)).scalars()]
        assert states == [("failed", "reconciled"), ("succeeded", None)]
        stored = svc.secret_store.get(secret_ref_name("credential", names["credential"], "default", "refresh_token")).reveal()
        assert stored != old and fake_upstream.refresh_token_valid(stored)
    finally:
        svc.close()


@pytest.mark.redis
def test_a_holder_whose_lock_expired_cannot_publish(tmp_path, postgres_url, redis_url, redis_prefix):
    """Fencing: after the lock expired and another caller took it, the first holder's write is refused."""
    import redis

    from govern.broker.upstream.single_flight import RedisSingleFlight
    from govern.cache import RedisCache

    cache = RedisCache(redis_url, redis_prefix)
    flight = RedisSingleFlight(cache, lease=30)
    try:
        first = flight.try_acquire("k")
        assert first is not None and flight.try_acquire("k") is None
        cache.client.delete(cache.key("flight:k"))  # the first holder's lock expired mid-call
        second = flight.try_acquire("k")
        assert second is not None and second.fence != first.fence
        assert not flight.publish(first, b"stale", 10)
        assert flight.publish(second, b"fresh", 10) and cache.get("k") == b"fresh"
        flight.release(first)  # a stale holder cannot release the new holder's lock either
        assert flight.is_locked("k")
        flight.release(second)
        assert not flight.is_locked("k")
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=redis_prefix + "*"):
            client.delete(key)


def test_row_lock_waiters_time_out_with_upstream_timeout(postgres_url):
    """The store's row lock gives up after its timeout (LockNotAvailable); the token broker answers that
    wait as `upstream_token_wait_timeout`, and the lock is free again once its holder is done."""
    from govern.broker.upstream.errors import UpstreamTimeout
    from govern.broker.upstream.service import UpstreamTokens
    from govern.ports import LockNotAvailable, SystemClock
    from govern.store.upstream_token_lock import DatabaseSingleFlight
    from govern.store.db import make_engine

    engine = make_engine(postgres_url)
    try:
        flight = DatabaseSingleFlight(engine)
        broker = UpstreamTokens(principals=None, landscape=None, secrets=None, token_cache=None, http=None,
                                clock=SystemClock(), journal=None, db_flight=DatabaseSingleFlight(engine))
        with flight.hold("k", 5):
            with pytest.raises(LockNotAvailable):
                with flight.hold("k", 0.2):
                    pass
            with pytest.raises(UpstreamTimeout) as err:  # the broker waits until its deadline, then gives up
                broker._via_row_lock("k", None, (), broker.clock.monotonic() + 0.2, lambda token: True)
        assert err.value.to_problem()["code"] == "upstream_token_wait_timeout"
        with flight.hold("k", 5) as again:  # the lock is free again
            assert again.sealed is None
    finally:
        engine.dispose()


@pytest.mark.redis
def test_a_lease_is_renewed_while_its_holder_works_and_lapses_when_it_stops(redis_url, redis_prefix):
    """The refresh lock is a short lease: the heartbeat keeps it past its length while the holder lives;
    once nobody renews it (the holder died), it frees itself within one lease."""
    import redis

    from govern.broker.upstream.single_flight import RedisSingleFlight
    from govern.cache import RedisCache

    cache = RedisCache(redis_url, redis_prefix)
    flight = RedisSingleFlight(cache, lease=0.6)
    renewals = []
    renew = flight.renew
    flight.renew = lambda f: renewals.append(1) or renew(f)
    try:
        held = flight.try_acquire("k")
        with flight.heartbeat(held):
            _wait_for(lambda: len(renewals) >= 5)  # more than one whole lease has gone by
            assert flight.is_locked("k") and flight.try_acquire("k") is None and not held.lost.is_set()
        # No release and no heartbeat any more: like a SIGKILLed holder.
        _wait_for(lambda: not flight.is_locked("k"))
        successor = flight.try_acquire("k")
        assert successor is not None
        assert not flight.renew(held) and held.lost.is_set()  # the dead holder cannot take it back
        assert not flight.publish(held, b"stale", 10) and flight.publish(successor, b"fresh", 10)
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=redis_prefix + "*"):
            client.delete(key)
