"""The `decision` and `decision_checkpoint` tables (govern.ports.DecisionRecords): the append-only, keyed,
hash-chained decision log's storage. The queue, the group commit and the key choice are the broker's
(govern.broker.decision_log); what happens inside one transaction is here.

Each batch is one transaction that:
1. takes the chain lock: `pg_advisory_xact_lock` on PostgreSQL, the database write lock
   (`BEGIN IMMEDIATE`) on SQLite, so writers in several processes never fork the chain;
2. reads the last record's id and hash inside that transaction;
3. assigns consecutive ids, chains the records with HMAC-SHA256 under the given key
   (govern.domain.decision_chain), and inserts the batch;
4. adds a signed checkpoint when the broker asks for one.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from govern.domain.decision_chain import GENESIS, HASHED_FIELDS, checkpoint_mac, record_digest, record_mac
from govern.store.db import table_of
from govern.store.tables import Decision, DecisionCheckpoint

ADVISORY_LOCK_KEY = 0x676F76_6C6F67  # "gov" "log": one chain per database
_COLUMNS = HASHED_FIELDS + ("prev_hash", "hash")
_JSON_COLUMNS = frozenset(("scopes_requested", "scopes_granted", "rules"))
_HEAD_SQL = "SELECT id, hash FROM decision ORDER BY id DESC LIMIT 1"


class DecisionRecordRepo:
    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._table = table_of(Decision)
        self._sql: dict[str, str] = {}
        self._conn: Any = None  # the log's own connection (pooled proxy), kept across batches (one batch at a time)
        self._conn_pid = 0
        self._turns = _WriterTurns.for_engine(engine)

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def append_chained(self, batch: list[dict[str, Any]], kid: str, key: bytes | None, *,
                       checkpoint: Callable[[int, int], bool], now: Callable[[], dt.datetime]) -> None:
        if self._engine.dialect.name == "postgresql":
            self._write_pg(batch, kid, key, checkpoint, now)
            return
        self._write_sqlite(batch, kid, key, checkpoint, now)

    def _write_sqlite(self, batch: list[dict[str, Any]], kid: str, key: bytes | None,
                      checkpoint: Callable[[int, int], bool], now: Callable[[], dt.datetime]) -> None:
        """On the log's own connection, through the driver: SQLAlchemy's statement building, result objects
        and pool checkout cost more CPU than the whole transaction (bench/README.md, issue #20). The database
        write lock (`BEGIN IMMEDIATE`) is the chain lock; the head is read inside it."""
        conn = self._connection()
        with self._turns.held():
            self._write_sqlite_locked(conn, batch, kid, key, checkpoint, now)

    def _write_sqlite_locked(self, conn: Any, batch: list[dict[str, Any]], kid: str, key: bytes | None,
                             checkpoint: Callable[[int, int], bool], now: Callable[[], dt.datetime]) -> None:
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute(_HEAD_SQL)
            last = cur.fetchone()
            first_id, prev = (last[0], last[1]) if last else (0, GENESIS)
            last_id = first_id
            rows = []
            for rec in batch:
                last_id += 1
                row = dict(rec, id=last_id, prev_hash=prev, key_id=kid)
                row["hash"] = prev = record_mac(row, prev, key) if key is not None else record_digest(row, prev)
                rows.append(_driver_row(row, True))
            cur.executemany(self._insert_sql(self._engine.dialect), rows)
            if key is not None and checkpoint(first_id, last_id):
                at = now()
                cp = {"key_id": kid, "head_id": last_id, "head_hash": prev, "at": at}
                cur.execute("INSERT INTO decision_checkpoint (at, key_id, head_id, head_hash, mac) VALUES (?, ?, ?, ?, ?)",
                            (_sqlite_timestamp(at), kid, last_id, prev, checkpoint_mac(cp, key)))
            conn.commit()
        except BaseException:
            # Rolled back here: a connection closed with a statement still alive (this frame's cursor, kept by
            # the traceback) lingers, holding the write lock (sqlite3_close_v2).
            with contextlib.suppress(Exception):  # the batch's own error is the one to raise
                cur.close()
                conn.rollback()
            self.close()  # the next batch starts on a fresh connection
            raise
        cur.close()

    def _write_pg(self, batch: list[dict[str, Any]], kid: str, key: bytes | None,
                  checkpoint: Callable[[int, int], bool], now: Callable[[], dt.datetime]) -> None:
        """The same transaction in two round trips, on a connection the writer keeps: psycopg's pipeline mode
        sends BEGIN, the lock and the head's read at once, then the inserts, the sequence and COMMIT at once.
        Each statement reads its own snapshot (READ COMMITTED), so the head is read after the lock is held."""
        conn = self._connection()
        try:
            with conn.pipeline():
                cur = conn.cursor()
                cur.execute("BEGIN")
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                head = conn.cursor()
                head.execute(_HEAD_SQL)
                last = head.fetchone()  # the first round trip
                first_id, prev = (last[0], last[1]) if last else (0, GENESIS)
                last_id, rows = first_id, []
                for rec in batch:
                    last_id += 1
                    row = dict(rec, id=last_id, prev_hash=prev, key_id=kid)
                    row["hash"] = prev = record_mac(row, prev, key) if key is not None else record_digest(row, prev)
                    rows.append(_driver_row(row, False))
                cur.executemany(self._insert_sql(self._engine.dialect), rows)
                # Ids are assigned here, under the lock; keep the column's sequence in step with them.
                cur.execute("SELECT setval(pg_get_serial_sequence('decision', 'id'), %s)", (last_id,))
                if key is not None and checkpoint(first_id, last_id):
                    cp = {"key_id": kid, "head_id": last_id, "head_hash": prev, "at": now()}
                    cur.execute("INSERT INTO decision_checkpoint (at, key_id, head_id, head_hash, mac) "
                                "VALUES (%s, %s, %s, %s, %s)",
                                (cp["at"], kid, last_id, prev, checkpoint_mac(cp, key)))
                cur.execute("COMMIT")
            # Leaving the pipeline waits for every result: an error in any statement raises here.
        except Exception:
            self.close()  # an aborted or broken session: start the next batch on a fresh one
            raise

    def _connection(self) -> Any:
        """The log's own driver connection, kept across batches (a forked child never reuses its parent's)."""
        if self._conn is None or self._conn_pid != os.getpid():
            pooled: Any = self._engine.raw_connection()
            if self._engine.dialect.name == "postgresql":
                pooled.driver_connection.autocommit = True  # the transaction is spelled out in the pipeline
            self._conn, self._conn_pid = pooled, os.getpid()
        return self._conn.driver_connection

    def close(self) -> None:
        """Throw away the log's own connection, if it has one."""
        pooled, self._conn = self._conn, None
        if pooled is not None and self._conn_pid == os.getpid():
            try:
                pooled.invalidate()  # closed, not returned to the pool
            except Exception:  # noqa: BLE001, S110 - it is being thrown away
                pass

    def checkpoint(self, kid: str, key: bytes, now: dt.datetime, *, only_if_moved: bool = False) -> dict | None:
        """Sign the chain's head under the chain lock; with `only_if_moved`, None when no record was written
        since the newest checkpoint."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            last = conn.execute(sa.select(self._table.c.id, self._table.c.hash)
                                .order_by(self._table.c.id.desc()).limit(1)).first()
            head_id, head_hash = (last[0], last[1]) if last else (0, GENESIS)
            if only_if_moved:
                cps = table_of(DecisionCheckpoint)
                signed = conn.execute(sa.select(sa.func.max(cps.c.head_id))).scalar()
                if signed is not None and signed >= head_id:
                    conn.rollback()
                    return None
            cp = _insert_checkpoint(conn, kid, key, head_id, head_hash, now)
            conn.commit()
        return cp

    def _insert_sql(self, dialect: sa.Dialect) -> str:
        sql = self._sql.get(dialect.name)
        if sql is None:
            quote = dialect.identifier_preparer.quote
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            # Column names from _COLUMNS (constants), quoted by the dialect; values are bound parameters.
            sql = self._sql[dialect.name] = (f"INSERT INTO decision ({', '.join(quote(c) for c in _COLUMNS)}) "  # noqa: S608
                                             f"VALUES ({', '.join([mark] * len(_COLUMNS))})")
        return sql

    def iter_records(self, batch: int = 1000, after: int = 0) -> Iterator[dict[str, Any]]:
        return iter_records(self._engine, batch, after)

    def checkpoints(self) -> list[dict[str, Any]]:
        return checkpoints(self._engine)


class _WriterTurns:
    """Whose turn it is to write the decision log, among the processes sharing one SQLite file.

    SQLite's own wait for its write lock is a sleep of 1, 2, 5 ... up to 100 ms between tries (its busy
    handler): with two gunicorn workers each writing a batch per commit, the one that lost a race slept while
    the lock was free again a millisecond later, and its requests waited with it (bench/README.md, issue #20:
    p99 of 0.5-1 s at 32 connections). An exclusive `flock` on a file beside the database is taken first and
    released after the COMMIT: a waiter tries again within a fraction of a millisecond. The kernel drops a dead
    process's lock. SQLite's lock is still taken inside it (`BEGIN IMMEDIATE`), so other writers stay excluded
    as before; the wait is bounded as SQLite's was (`timeout`), then the batch fails as a locked database does."""

    _POLL = 0.0002  # seconds between tries: short enough to follow a commit, cheap as a failed syscall

    def __init__(self, path: str | None, timeout: float):
        self._path, self._timeout = path, timeout
        self._fd: int | None = None
        self._pid = 0

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> _WriterTurns:
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        in_file = bool(path) and path != ":memory:" and not str(path).startswith("file::memory:")
        return cls(f"{path}-decision.lock" if in_file else None, timeout=30.0)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own (flock is per open file)
            self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), os.getpid()  # type: ignore[arg-type]
        return self._fd

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._path is None:  # in-memory SQLite: one process
            yield
            return
        fd = self._file()
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            now = time.monotonic()
            deadline = deadline or now + self._timeout
            if now >= deadline:
                raise sqlite3.OperationalError("database is locked")  # what BEGIN IMMEDIATE raises after its timeout
            time.sleep(self._POLL)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _insert_checkpoint(conn: sa.Connection, kid: str, key: bytes, head_id: int, head_hash: str,
                       at: dt.datetime) -> dict[str, Any]:
    cp: dict[str, Any] = {"key_id": kid, "head_id": head_id, "head_hash": head_hash, "at": at}
    cp["mac"] = checkpoint_mac(cp, key)
    result = conn.execute(sa.insert(table_of(DecisionCheckpoint)).values(**cp))
    cp["id"] = result.inserted_primary_key[0] if result.inserted_primary_key else None
    return cp


def _driver_row(row: dict[str, Any], sqlite: bool) -> tuple:
    """Values as SQLAlchemy would bind them: JSON text for JSON columns; on SQLite, timestamps in
    SQLAlchemy's storage format (UTC, no offset), so that ORM reads see the same values."""
    out = []
    for col in _COLUMNS:
        value = row[col]
        if col in _JSON_COLUMNS:
            value = json.dumps(list(value))
        elif col == "at" and sqlite:
            value = _sqlite_timestamp(value)
        out.append(value)
    return tuple(out)


def _sqlite_timestamp(value: dt.datetime) -> str:
    """SQLAlchemy's SQLite storage format for a DateTime column (UTC, no offset)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def iter_records(engine: sa.Engine, batch: int = 1000, after: int = 0) -> Iterator[dict[str, Any]]:
    """Every decision record after id `after`, in id order, read in batches (keyset pagination): constant memory."""
    table = table_of(Decision)
    cols = [table.c[name] for name in HASHED_FIELDS] + [table.c.prev_hash, table.c.hash]
    last = after
    while True:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(table.c.id > last).order_by(table.c.id).limit(batch)).mappings().all()
        if not rows:
            return
        for row in rows:
            rec = dict(row)
            rec["at"] = _aware(rec["at"])
            yield rec
        last = rows[-1]["id"]


def checkpoints(engine: sa.Engine) -> list[dict[str, Any]]:
    table = table_of(DecisionCheckpoint)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    return [dict(r, at=_aware(r["at"])) for r in rows]
