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

Building the cache imports nothing more: the table (with SQLModel and every govern table class) and the
dialect's upsert are loaded on the first operation, so a command that never touches the shared state (`govern
secrets status`) does not pay for those imports (bench/cli.py; tests/test_cli_startup.py).
"""
from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from govern.cache import CacheUnavailable

PURGE_EVERY = 500  # writes, on average, between purges of expired rows


@functools.cache
def _table() -> sa.Table:
    from govern.store.db import table_of
    from govern.store.tables import SharedState

    return table_of(SharedState)


def _upsert_for(dialect: str) -> Callable[[sa.Table], Any]:
    """The dialect's INSERT, which has ON CONFLICT."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    raise ValueError(f"no upsert for the {dialect} dialect")  # pragma: no cover - govern supports these two


class DatabaseCache:
    kind = "database"

    def __init__(self, engine: sa.Engine, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._clock = clock
        if engine.dialect.name not in ("postgresql", "sqlite"):  # pragma: no cover - govern supports these two
            raise ValueError(f"no upsert for the {engine.dialect.name} dialect")
        self._upsert: Callable[[sa.Table], Any] | None = None
        self._autocommit: sa.Engine | None = None
        self._readers: dict[int, tuple[str, Callable[[dict[str, Any]], Any]]] = {}

    def _insert(self, table: sa.Table) -> Any:
        if self._upsert is None:
            self._upsert = _upsert_for(self._engine.dialect.name)
        return self._upsert(table)

    def _expiry(self, ttl: float | None) -> float | None:
        return self._clock() + ttl if ttl else None

    def _run(self, fn):
        try:
            with self._engine.begin() as conn:
                return fn(conn)
        except sa.exc.OperationalError:
            raise CacheUnavailable("the shared state in the database cannot be reached") from None

    def _drop_expired(self, conn, key: str) -> None:
        t = _table()
        conn.execute(sa.delete(t).where(t.c.key == key, t.c.expires_at.is_not(None), t.c.expires_at <= self._clock()))

    def _maybe_purge(self, conn) -> None:
        if random.random() < 1 / PURGE_EVERY:  # noqa: S311 - housekeeping, not security
            t = _table()
            conn.execute(sa.delete(t).where(t.c.expires_at.is_not(None), t.c.expires_at <= self._clock()))

    def _reader(self, n: int) -> tuple[str, Callable[[dict[str, Any]], Any]]:
        """The SELECT of `n` keys as the driver's SQL (compiled once per number of keys) and its parameters."""
        found = self._readers.get(n)
        if found is None:
            t = _table()
            statement = sa.select(t.c.key, t.c.value, t.c.count, t.c.expires_at) \
                .where(t.c.key.in_([sa.bindparam(f"k{i}") for i in range(n)]))
            compiled = statement.compile(dialect=self._engine.dialect)
            order = compiled.positiontup
            params: Callable[[dict[str, Any]], Any] = (lambda p: [p[name] for name in order]) if order else dict
            found = self._readers[n] = (str(compiled), params)
        return found

    def _read_rows(self, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        """The rows of `keys`, read through the driver on a pooled connection outside a transaction.

        The circuit breaker reads its state on every proxied call: through SQLAlchemy Core (execution context,
        result objects, the isolation level set and reset) the read cost more than the database's own work
        (bench/README.md, "Issue #20, second evening session"). PostgreSQL: in autocommit, so no BEGIN and no ROLLBACK round
        trip; SQLite's driver begins no transaction for a SELECT."""
        sql, params = self._reader(len(keys))
        try:
            raw = self._engine.raw_connection()
        except sa.exc.OperationalError:
            raise CacheUnavailable("the shared state in the database cannot be reached") from None
        try:
            driver = raw.driver_connection
            postgres = self._engine.dialect.name == "postgresql"
            if postgres:
                driver.autocommit = True  # type: ignore[union-attr]
            try:
                cur = raw.cursor()
                cur.execute(sql, params({f"k{i}": key for i, key in enumerate(keys)}))
                return list(cur.fetchall())
            finally:
                if postgres:
                    driver.autocommit = False  # type: ignore[union-attr]
        except self._engine.dialect.loaded_dbapi.OperationalError:  # a dead connection fails the next pre-ping
            raise CacheUnavailable("the shared state in the database cannot be reached") from None
        finally:
            raw.close()

    def _execute(self, statement: sa.Executable, params: dict[str, Any]) -> list[Any]:
        """One statement outside a transaction (autocommit: no BEGIN and COMMIT round trips); its rows."""
        if self._autocommit is None:
            self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        try:
            with self._autocommit.connect() as conn:
                return list(conn.execute(statement, params))
        except sa.exc.OperationalError:
            raise CacheUnavailable("the shared state in the database cannot be reached") from None

    def _value(self, row: tuple[Any, ...] | None, now: float) -> bytes | None:
        if row is None:
            return None
        _key, value, count, expires_at = row
        if expires_at is not None and expires_at <= now:
            return None
        return bytes(value) if value is not None else str(count or 0).encode()

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        found = {row[0]: row for row in self._read_rows(keys)}
        now = self._clock()
        return [self._value(found.get(key), now) for key in keys]

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires, t = self._expiry(ttl), _table()

        def write(conn):
            stmt = self._insert(t).values(key=key, value=value, count=None, expires_at=expires)
            conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.key],
                                                    set_={"value": value, "count": None, "expires_at": expires}))
            self._maybe_purge(conn)

        self._run(write)

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires, t = self._expiry(ttl), _table()

        def write(conn):
            self._drop_expired(conn, key)
            stmt = self._insert(t).values(key=key, value=value, count=None, expires_at=expires)
            won = conn.execute(stmt.on_conflict_do_nothing(index_elements=[t.c.key]).returning(t.c.key)).first()
            self._maybe_purge(conn)
            return won is not None

        return bool(self._run(write))

    def delete(self, key: str) -> None:
        t = _table()
        self._run(lambda conn: conn.execute(sa.delete(t).where(t.c.key == key)))

    def delete_if(self, key: str, value: bytes) -> bool:
        """Delete the key only while it still holds `value` (compare-and-delete); True when deleted."""
        t = _table()

        def write(conn):
            gone = conn.execute(sa.delete(t).where(t.c.key == key, t.c.value == value).returning(t.c.key)).first()
            return gone is not None

        return bool(self._run(write))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Like Redis INCRBY with EXPIRE NX: the expiry is set when the counter is created, not extended."""
        expires, t = self._expiry(ttl), _table()

        def write(conn):
            self._drop_expired(conn, key)
            stmt = self._insert(t).values(key=key, value=None, count=amount, expires_at=expires)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.key],
                set_={"count": sa.func.coalesce(t.c.count, 0) + amount, "value": None}).returning(t.c.count)
            return int(conn.execute(stmt).scalar_one())

        return self._run(write)

    def incr_each(self, keys: Sequence[str], ttl: float) -> list[int]:
        """Add 1 to each counter in one statement, outside a transaction (autocommit: no BEGIN and COMMIT round
        trips): a multi-row upsert whose update restarts a counter that has expired, as INCR after EXPIRE does."""
        if not keys:
            return []
        now, t = self._clock(), _table()
        expires = now + ttl
        stmt = self._insert(t).values([{"key": k, "value": None, "count": 1, "expires_at": expires} for k in keys])
        expired = sa.and_(t.c.expires_at.is_not(None), t.c.expires_at <= now)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.key], set_={
            "count": sa.case((expired, stmt.excluded.count), else_=sa.func.coalesce(t.c.count, 0) + stmt.excluded.count),
            "expires_at": sa.case((expired, stmt.excluded.expires_at),
                                  else_=sa.func.coalesce(t.c.expires_at, stmt.excluded.expires_at)),
            "value": None}).returning(t.c.key, t.c.count)
        counts = {key: int(count) for key, count in self._execute(stmt, {})}
        return [counts[k] for k in keys]

    def ping(self) -> None:
        self._run(lambda conn: conn.execute(sa.text("SELECT 1")))
