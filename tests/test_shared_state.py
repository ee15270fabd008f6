"""govern.store.shared_state.DatabaseCache: the Cache port's semantics (those of RedisCache) on the database
backend under test, and across two engines (two processes' views of one database)."""
from __future__ import annotations

import threading

import pytest

from govern.store.db import make_engine
from govern.store.shared_state import DatabaseCache


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two(database_url):
    clock = Clock()
    engines = [make_engine(database_url), make_engine(database_url)]
    yield DatabaseCache(engines[0], clock), DatabaseCache(engines[1], clock), clock
    for engine in engines:
        engine.dispose()


def test_set_get_delete_and_expiry_are_seen_by_the_other_process(two):
    a, b, clock = two
    assert b.get("k") is None
    a.set("k", b"v1", ttl=10)
    assert b.get("k") == b"v1"
    b.set("k", b"v2")  # no ttl: kept
    clock.now += 100
    assert a.get("k") == b"v2"
    a.set("k", b"v3", ttl=5)
    clock.now += 5
    assert b.get("k") is None
    a.set("gone", b"x")
    b.delete("gone")
    assert a.get("gone") is None


def test_delete_if_deletes_only_the_value_it_was_given(two):
    a, b, _ = two
    a.set("k", b"old")
    b.set("k", b"new")  # another process replaced it meanwhile
    assert not a.delete_if("k", b"old") and b.get("k") == b"new"
    assert a.delete_if("k", b"new") and b.get("k") is None
    assert not a.delete_if("k", b"new")


def test_add_elects_exactly_one_and_an_expired_key_can_be_added_again(two):
    a, b, clock = two
    assert a.add("lock", b"a", ttl=10) is True
    assert b.add("lock", b"b", ttl=10) is False
    assert b.get("lock") == b"a"
    clock.now += 10
    assert b.add("lock", b"b", ttl=10) is True
    assert a.get("lock") == b"b"


def test_incr_counts_across_processes_and_keeps_its_first_expiry(two):
    a, b, clock = two
    assert a.incr("n", ttl=10) == 1
    assert b.incr("n", 4, ttl=10) == 5
    assert a.incr("n", -1, ttl=10) == 4
    assert b.get("n") == b"4"
    clock.now += 9
    assert a.incr("n", ttl=10) == 5  # not extended by later increments (Redis EXPIRE NX)
    clock.now += 1
    assert b.get("n") is None
    assert b.incr("n", ttl=10) == 1


def test_concurrent_adds_elect_one_winner(two):
    a, b, _ = two
    wins = []
    barrier = threading.Barrier(16)

    def race(cache, i):
        barrier.wait()
        if cache.add("race", str(i).encode(), ttl=60):
            wins.append(i)

    threads = [threading.Thread(target=race, args=((a, b)[i % 2], i)) for i in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(wins) == 1


def test_concurrent_increments_lose_nothing(two):
    a, b, _ = two
    barrier = threading.Barrier(8)

    def bump(cache):
        barrier.wait()
        for _ in range(25):
            cache.incr("total", ttl=600)

    threads = [threading.Thread(target=bump, args=((a, b)[i % 2],)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert a.get("total") == b"200"


def test_without_redis_services_share_state_through_the_database(services):
    assert services.cache.kind == "database"
    services.cache.ping()


def test_delete_if_deletes_only_the_value_it_was_given(two):
    a, b, _ = two
    a.set("tok", b"v1")
    assert b.delete_if("tok", b"v2") is False and a.get("tok") == b"v1"
    assert b.delete_if("tok", b"v1") is True and a.get("tok") is None


def test_incr_each_counts_every_key_across_processes_and_restarts_an_expired_counter(two):
    a, b, clock = two
    assert a.incr_each(["r:1", "r:2"], ttl=120) == [1, 1]
    assert b.incr_each(["r:2", "r:1"], ttl=120) == [2, 2]  # in the order asked
    assert b.incr_each([], ttl=120) == []
    clock.now += 119
    assert a.incr_each(["r:1"], ttl=120) == [3]  # the expiry is not extended (EXPIRE NX)
    clock.now += 1
    assert b.incr_each(["r:1"], ttl=120) == [1]  # expired: counted afresh, as INCR after the key expired
    assert a.get("r:2") is None


def test_incr_each_is_one_statement_outside_a_transaction(two):
    """One round trip: a single statement on a connection in autocommit (no BEGIN or COMMIT is sent)."""
    import sqlite3

    import sqlalchemy as sa

    a, _, _ = two
    seen: list[tuple[str, bool]] = []

    def autocommit(dbapi) -> bool:
        if isinstance(dbapi, sqlite3.Connection):
            return dbapi.isolation_level is None
        return bool(dbapi.autocommit)  # psycopg

    def record(conn, cur, statement, *rest):
        seen.append((statement.lstrip().split()[0].upper(), autocommit(cur.connection)))

    sa.event.listen(a._engine, "before_cursor_execute", record)
    assert a.incr_each(["one-trip:a", "one-trip:b", "one-trip:c"], ttl=60) == [1, 1, 1]
    assert a.incr_each(["one-trip:a", "one-trip:b", "one-trip:c"], ttl=60) == [2, 2, 2]
    assert seen == [("INSERT", True)] * 2


def test_concurrent_incr_each_loses_nothing(two):
    a, b, _ = two
    barrier = threading.Barrier(8)

    def bump(cache):
        barrier.wait()
        for _ in range(25):
            cache.incr_each(["each:x", "each:y"], ttl=600)

    threads = [threading.Thread(target=bump, args=((a, b)[i % 2],)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert a.get("each:x") == b"200" and b.get("each:y") == b"200"


@pytest.mark.redis
def test_redis_incr_each_counts_in_one_pipeline(redis_url, redis_prefix):
    from govern.cache import RedisCache

    a, b = RedisCache(redis_url, redis_prefix), RedisCache(redis_url, redis_prefix)
    assert a.incr_each(["r:1", "r:2"], ttl=120) == [1, 1]
    assert b.incr_each(["r:2", "r:1"], ttl=120) == [2, 2]
    assert 0 < a.client.ttl(a.key("r:1")) <= 120
    a.client.delete(a.key("r:1"), a.key("r:2"))


def test_get_many_reads_every_key_in_one_statement_outside_a_transaction(database_url):
    """The circuit breaker reads a system's `open` record and failure count with it on every proxied call."""
    import sqlalchemy as sa

    clock = Clock()
    writer_engine, reader_engine = make_engine(database_url), make_engine(database_url)
    sent: list[str] = []

    @sa.event.listens_for(reader_engine, "connect")
    def trace(dbapi_conn, _record):
        if hasattr(dbapi_conn, "set_trace_callback"):  # SQLite: every statement the driver sends
            dbapi_conn.set_trace_callback(sent.append)

    try:
        a, b = DatabaseCache(writer_engine, clock), DatabaseCache(reader_engine, clock)
        a.set("m:v", b"value", ttl=10)
        a.incr("m:n", 3)
        a.set("m:gone", b"x", ttl=1)
        clock.now += 1
        assert b.get_many(["m:n", "m:absent", "m:v", "m:gone"]) == [b"3", None, b"value", None]
        assert b.get_many([]) == [] and b.get("m:v") == b"value"
        if reader_engine.dialect.name == "sqlite":
            assert [s.split()[0].upper() for s in sent if not s.startswith("PRAGMA")] == ["SELECT", "SELECT"]
        else:  # PostgreSQL: read in autocommit, so no transaction is left open on the pooled connection
            with reader_engine.connect() as conn:
                assert conn.connection.driver_connection.autocommit is False
            a.set("m:v", b"changed")
            assert b.get("m:v") == b"changed"
    finally:
        writer_engine.dispose()
        reader_engine.dispose()


def test_memory_cache_get_many_in_the_order_asked():
    from govern.cache import MemoryCache

    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    cache.set("a", b"1")
    cache.set("b", b"2", ttl=5)
    now[0] = 5
    assert cache.get_many(["b", "a", "c"]) == [None, b"1", None]


@pytest.mark.redis
def test_redis_get_many_in_the_order_asked(redis_url, redis_prefix):
    from govern.cache import RedisCache

    cache = RedisCache(redis_url, redis_prefix)
    cache.set("gm:a", b"1", ttl=60)
    cache.incr("gm:n", 2, ttl=60)
    assert cache.get_many(["gm:n", "gm:none", "gm:a"]) == [b"2", None, b"1"]
    assert cache.get_many([]) == []
    cache.client.delete(cache.key("gm:a"), cache.key("gm:n"))
