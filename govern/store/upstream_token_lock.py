"""Single flight across processes that share PostgreSQL but no Redis (govern.ports.TokenRowLocks):
`SELECT ... FOR UPDATE` on a row per key of `upstream_token_lock`.

Waiters block on the row lock (bounded by `lock_timeout`), then read the sealed result from the row. A row
lock needs no lease: PostgreSQL releases it when the holder's connection ends, and the kernel closes that
connection when the holder dies. The result is written in the transaction that holds the lock, so it is
fenced by construction. (SQLite has no row locks; there govern is a single process by design.)
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from govern.ports import LockNotAvailable


class RowLockFlight:
    """Holds `SELECT ... FOR UPDATE` on the key's row for the duration of one upstream call."""

    def __init__(self, conn: sa.Connection, key: str, sealed: bytes | None, expires_at: dt.datetime | None):
        self.conn = conn
        self.key = key
        self.sealed = sealed
        self.expires_at = expires_at

    def publish(self, value: bytes, expires_at: dt.datetime | None) -> None:
        self.conn.execute(sa.text("UPDATE upstream_token_lock SET sealed_token = :v, expires_at = :e, fence = fence + 1 "
                                  "WHERE key = :k"), {"v": value, "e": expires_at, "k": self.key})


class DatabaseSingleFlight:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def forget(self, key: str) -> None:
        """Drop the sealed result (invalidate): the next holder calls the upstream."""
        with self.engine.begin() as conn:
            conn.execute(sa.text("UPDATE upstream_token_lock SET sealed_token = NULL, expires_at = NULL WHERE key = :k"),
                         {"k": key})

    def sealed(self, key: str) -> bytes | None:
        """The sealed result held for `key`, if any (read by govern offboard, which revokes it)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT sealed_token FROM upstream_token_lock WHERE key = :k"), {"k": key}).first()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def forget_if(self, key: str, refused: Callable[[bytes], bool]) -> None:
        """Drop the sealed result only if `refused(sealed)` (compare-and-invalidate). A row locked by a
        holder is being refreshed right now: its result replaces the refused one anyway, so it is skipped."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.text("SELECT sealed_token FROM upstream_token_lock WHERE key = :k "
                                       "FOR UPDATE SKIP LOCKED"), {"k": key}).first()
            if row is not None and row[0] is not None and refused(bytes(row[0])):
                conn.execute(sa.text("UPDATE upstream_token_lock SET sealed_token = NULL, expires_at = NULL "
                                     "WHERE key = :k"), {"k": key})

    @contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[RowLockFlight]:
        with self.engine.connect() as conn:
            with conn.begin():
                conn.execute(sa.text("INSERT INTO upstream_token_lock (key, fence) VALUES (:k, 0) "
                                     "ON CONFLICT (key) DO NOTHING"), {"k": key})
            try:
                with conn.begin():
                    ms = max(1, int(timeout * 1000))
                    conn.execute(sa.text(f"SET LOCAL lock_timeout = {ms}"))
                    row = conn.execute(sa.text("SELECT sealed_token, expires_at FROM upstream_token_lock "
                                               "WHERE key = :k FOR UPDATE"), {"k": key}).one()
                    yield RowLockFlight(conn, key, row[0], row[1])
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise LockNotAvailable(key) from None
                raise
