"""The Cache port (govern.ports.Cache) in the database: one shared store for every govern process when no
Redis is configured.

Every piece of state that a later request may need must outlive the process that wrote it and be seen by
the others: the state and PKCE verifier of a principal being connected (the upstream's callback may reach
another worker, or the CLI started it), idempotency keys, circuit breakers, daily budgets, console session
revocations and sign-in failures. Redis does this when `GOVERN_REDIS_URL` is set; otherwise this table does,
on SQLite and PostgreSQL alike.

Each operation is one statement or one short transaction: `add` is an insert that does nothing on conflict
(after dropping the key if it expired), `incr` an upsert that adds to the counter and returns it. Expired
rows are ignored when read and purged now and then.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from govern.cache import CacheUnavailable
from govern.store.db import table_of
from govern.store.tables import SharedState

PURGE_EVERY = 500  # writes, on average, between purges of expired rows

_T = table_of(SharedState)
# Built once: building the statement and its cache key on every call cost more than running it (cProfile of a
# proxied call, bench/hot_path_profile.py --path proxy: the circuit breaker reads its state on every call).
_GET = sa.select(_T.c.value, _T.c.count, _T.c.expires_at).where(_T.c.key == sa.bindparam("key"))


class DatabaseCache:
    kind = "database"

    def __init__(self, engine: sa.Engine, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._clock = clock
        dialect = engine.dialect.name
        insert: Callable[[sa.Table], Any]
        if dialect == "postgresql":
            insert = postgresql.insert
        elif dialect == "sqlite":
            insert = sqlite.insert
        else:  # pragma: no cover - govern supports these two
            raise ValueError(f"no upsert for the {dialect} dialect")
        self._insert = insert

    def _expiry(self, ttl: float | None) -> float | None:
        return self._clock() + ttl if ttl else None

    def _run(self, fn):
        try:
            with self._engine.begin() as conn:
                return fn(conn)
        except sa.exc.OperationalError:
            raise CacheUnavailable("the shared state in the database cannot be reached") from None

    def _drop_expired(self, conn, key: str) -> None:
        conn.execute(sa.delete(_T).where(_T.c.key == key, _T.c.expires_at.is_not(None),
                                         _T.c.expires_at <= self._clock()))

    def _maybe_purge(self, conn) -> None:
        if random.random() < 1 / PURGE_EVERY:  # noqa: S311 - housekeeping, not security
            conn.execute(sa.delete(_T).where(_T.c.expires_at.is_not(None), _T.c.expires_at <= self._clock()))

    def get(self, key: str) -> bytes | None:
        def read(conn):
            row = conn.execute(_GET, {"key": key}).first()
            if row is None or (row.expires_at is not None and row.expires_at <= self._clock()):
                return None
            return row.value if row.value is not None else str(row.count or 0).encode()

        return self._run(read)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = self._expiry(ttl)

        def write(conn):
            stmt = self._insert(_T).values(key=key, value=value, count=None, expires_at=expires)
            conn.execute(stmt.on_conflict_do_update(index_elements=[_T.c.key],
                                                    set_={"value": value, "count": None, "expires_at": expires}))
            self._maybe_purge(conn)

        self._run(write)

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires = self._expiry(ttl)

        def write(conn):
            self._drop_expired(conn, key)
            stmt = self._insert(_T).values(key=key, value=value, count=None, expires_at=expires)
            won = conn.execute(stmt.on_conflict_do_nothing(index_elements=[_T.c.key]).returning(_T.c.key)).first()
            self._maybe_purge(conn)
            return won is not None

        return bool(self._run(write))

    def delete(self, key: str) -> None:
        self._run(lambda conn: conn.execute(sa.delete(_T).where(_T.c.key == key)))

    def delete_if(self, key: str, value: bytes) -> bool:
        """Delete the key only while it still holds `value` (compare-and-delete); True when deleted."""
        def write(conn):
            gone = conn.execute(sa.delete(_T).where(_T.c.key == key, _T.c.value == value).returning(_T.c.key)).first()
            return gone is not None

        return bool(self._run(write))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Like Redis INCRBY with EXPIRE NX: the expiry is set when the counter is created, not extended."""
        expires = self._expiry(ttl)

        def write(conn):
            self._drop_expired(conn, key)
            stmt = self._insert(_T).values(key=key, value=None, count=amount, expires_at=expires)
            stmt = stmt.on_conflict_do_update(
                index_elements=[_T.c.key],
                set_={"count": sa.func.coalesce(_T.c.count, 0) + amount, "value": None}).returning(_T.c.count)
            return int(conn.execute(stmt).scalar_one())

        return self._run(write)

    def ping(self) -> None:
        self._run(lambda conn: conn.execute(sa.text("SELECT 1")))
