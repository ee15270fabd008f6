"""DecisionLog: the append-only, keyed, hash-chained `decision` table (govern.domain.decision_chain).

`append` returns only once its record is committed (group commit): the request thread puts the record
on a queue and waits; one writer thread takes everything queued, writes it as one batch in one
transaction and wakes every waiter of the batch. Under load many requests share one commit; when idle a
record costs one commit of its own. If the commit fails, every appender of that batch gets
`DecisionLogUnavailable` (503), so no answer goes out without its record.

Each batch is one transaction that:
1. takes the chain lock: `pg_advisory_xact_lock` on PostgreSQL, the database write lock
   (`BEGIN IMMEDIATE`) on SQLite, so writers in several processes never fork the chain;
2. reads the last record's id and hash inside that transaction;
3. assigns consecutive ids, chains the records with HMAC-SHA256 under the active key
   (govern.broker.decision_keys), and inserts the batch;
4. every `checkpoint_every` records (and at the first batch of each writer) adds a signed checkpoint.
`flush()` waits until nothing is queued; `close()` (registered with `services.close` and atexit) flushes,
then stops the writer.
"""
from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import queue
import threading
import time
from typing import Any
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from govern.domain.decision_chain import (GENESIS, HASHED_FIELDS, STORE_DOWN_KEY_ID, ChainReport, checkpoint_mac,
                                          derive_outcome, record_digest, record_mac, verify_chain)
from govern.errors import GovernError, SecretStoreUnavailable
from govern.logs import current_correlation_id, new_correlation_id
from govern.ports import Clock
from govern.store.db import table_of
from govern.store.tables import Decision, DecisionCheckpoint

log = logging.getLogger("govern.decisions")

ADVISORY_LOCK_KEY = 0x676F76_6C6F67  # "gov" "log": one chain per database
_STOP = object()


class DecisionLogUnavailable(GovernError):
    code = "decision_log_unavailable"
    status = 503
    title = "The decision could not be recorded"

    def __init__(self, detail: str | None = None, **kw):
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(detail, **kw)


class _Pending:
    __slots__ = ("record", "done", "error")

    def __init__(self, record: dict):
        self.record = record
        self.done = threading.Event()
        self.error: BaseException | None = None


class ChainedDecisionLog:
    def __init__(self, engine: sa.Engine, clock: Clock, keys, *, batch_size: int = 500, linger_seconds: float = 0.0,
                 commit_timeout: float = 30.0, checkpoint_every: int = 1000):
        self._engine = engine
        self._clock = clock
        self.keys = keys  # govern.broker.decision_keys.DecisionKeys
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._commit_timeout = commit_timeout
        self._checkpoint_every = checkpoint_every
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._checkpointed = False  # this writer has written its first checkpoint
        self._wake = threading.Event()  # set by flush/close: stop lingering
        self._table = table_of(Decision)
        self._writing_since: Any = None  # `at` of the oldest record of the batch being written (for backlog())
        self._sql: dict[str, str] = {}
        self._write_lock = threading.Lock()
        self._pg = None  # the writer thread's own PostgreSQL connection (pooled proxy), kept across batches
        self.commits = 0  # batches committed by this process (records / commits: the group commit's sharing)
        atexit.register(self.close)

    # --- the hot path ---------------------------------------------------------------------------

    def append(self, request=None, decision=None, **fields: Any) -> None:
        """Record one decision; return once it is committed. Raises DecisionLogUnavailable otherwise."""
        record: dict[str, Any] = {
            "at": self._clock.now(),
            "correlation_id": current_correlation_id() or new_correlation_id(),
            "integration_user": None, "action": "token", "named_credential": None, "principal": None,
            "method": None, "path": None, "resource_object": None, "api_type": None,
            "scopes_requested": [], "scopes_granted": [], "source_ip": None, "allowed": False, "rules": [],
            "upstream_status": None, "latency_ms": None, "outcome": None, "error_code": None,
        }
        if request is not None:
            record.update(integration_user=request.caller.integration_user, action=request.action,
                          named_credential=request.named_credential, method=request.method,
                          path=request.path, resource_object=request.resource_object, api_type=request.api_type,
                          scopes_requested=list(request.scopes), source_ip=request.caller.source_ip)
        if decision is not None:
            record.update(allowed=decision.allowed, rules=list(decision.rules), principal=decision.principal,
                          scopes_granted=list(decision.scopes_granted))
        for key, value in fields.items():
            if key not in record:
                raise TypeError(f"unknown decision field {key!r}")
            record[key] = list(value) if isinstance(value, tuple) else value
        if record["outcome"] is None:
            record["outcome"] = derive_outcome(record["allowed"], record["upstream_status"], record["error_code"])
        if record["latency_ms"] is not None:
            record["latency_ms"] = round(float(record["latency_ms"]), 3)
        if record["path"] and len(record["path"]) > 2000:
            record["path"] = record["path"][:2000]
        _storable(record)
        if self._closed:
            self._commit([record])  # after shutdown: synchronously
            return
        pending = _Pending(record)
        self._ensure_writer()
        self._queue.put(pending)
        if not pending.done.wait(self._commit_timeout):
            # The record may still be committed later: then the log shows a decision whose answer was a 503,
            # never the other way round.
            log.error("decision log: a record was not committed in time",
                      extra={"timeout_seconds": self._commit_timeout})
            raise DecisionLogUnavailable("the decision could not be recorded in time; retry later")
        if pending.error is not None:
            raise DecisionLogUnavailable("the decision could not be recorded; retry later") from None

    # --- the writer ------------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="govern-decision-log", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            self._writing_since = first.record["at"]  # taken off the queue, not yet written
            if self._linger:
                self._wake.wait(self._linger)
            batch, stop = [first], False
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            error = None
            try:
                self._commit([p.record for p in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter of the batch fails with it
                error = exc
                log.error("decision log write failed; the batch's requests fail",
                          extra={"exc_type": type(exc).__name__, "records": len(batch)})
            self._writing_since = None
            for pending in batch:
                pending.error = error
                pending.done.set()
                self._queue.task_done()
            if stop:
                self._queue.task_done()
                return

    def _commit(self, batch: list[dict]) -> None:
        """Write the batch; one immediate retry covers a connection the database dropped."""
        with self._write_lock:  # the writer thread, and appenders after close()
            try:
                self._write(batch)
            except Exception:  # noqa: BLE001 - the transaction was rolled back; one more try, then the error
                self._write(batch)

    def _chain_key(self) -> tuple[str, bytes | None]:
        """The active key, or (STORE_DOWN_KEY_ID, None) while the secret store cannot be read: a process
        that starts during a vault outage still records every decision (and answers), unkeyed until the
        store is back (docs/decision-log.md)."""
        try:
            return self.keys.active()
        except SecretStoreUnavailable:
            log.warning("decision records written without the chain key: the secret store is down",
                        extra={"alert": "decision_log_unkeyed"})
            return STORE_DOWN_KEY_ID, None

    def _write(self, batch: list[dict]) -> None:
        # The key is read before the transaction: the local secret store lives in the same (SQLite) database.
        kid, key = self._chain_key()
        if self._engine.dialect.name == "postgresql":
            self._write_pg(batch, kid, key)
            self.commits += 1
            return
        with self._engine.connect() as conn:  # SQLite: the database write lock is the chain lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            last = conn.execute(sa.select(self._table.c.id, self._table.c.hash)
                                .order_by(self._table.c.id.desc()).limit(1)).first()
            first_id, prev = (last[0], last[1]) if last else (0, GENESIS)
            last_id = first_id
            rows = []
            for rec in batch:
                last_id += 1
                row = dict(rec, id=last_id, prev_hash=prev, key_id=kid)
                row["hash"] = prev = record_mac(row, prev, key) if key is not None else record_digest(row, prev)
                rows.append(_driver_row(row, True))
            # The driver's executemany, not the ORM: this is the log's whole cost per record.
            conn.exec_driver_sql(self._insert_sql(conn.dialect), rows)
            every = self._checkpoint_every
            if key is not None and (not self._checkpointed or (every and last_id // every > first_id // every)):
                _insert_checkpoint(conn, kid, key, last_id, prev, self._clock.now())
            conn.commit()
        self._checkpointed = True
        self.commits += 1

    def _write_pg(self, batch: list[dict], kid: str, key: bytes | None) -> None:
        """The same transaction in two round trips, on a connection the writer keeps: psycopg's pipeline mode
        sends BEGIN, the lock and the head's read at once, then the inserts, the sequence and COMMIT at once.
        Each statement reads its own snapshot (READ COMMITTED), so the head is read after the lock is held."""
        conn = self._pg_connection()
        try:
            with conn.pipeline():
                cur = conn.cursor()
                cur.execute("BEGIN")
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                head = conn.cursor()
                head.execute("SELECT id, hash FROM decision ORDER BY id DESC LIMIT 1")
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
                every = self._checkpoint_every
                if key is not None and (not self._checkpointed or (every and last_id // every > first_id // every)):
                    cp = {"key_id": kid, "head_id": last_id, "head_hash": prev, "at": self._clock.now()}
                    cur.execute("INSERT INTO decision_checkpoint (at, key_id, head_id, head_hash, mac) "
                                "VALUES (%s, %s, %s, %s, %s)",
                                (cp["at"], kid, last_id, prev, checkpoint_mac(cp, key)))
                cur.execute("COMMIT")
            # Leaving the pipeline waits for every result: an error in any statement raises here.
        except Exception:
            self._drop_pg_connection()  # an aborted or broken session: start the next batch on a fresh one
            raise
        self._checkpointed = True

    def _pg_connection(self):
        if self._pg is None:
            pooled = self._engine.raw_connection()
            pooled.driver_connection.autocommit = True  # the transaction is spelled out in the pipeline
            self._pg = pooled
        return self._pg.driver_connection

    def _drop_pg_connection(self) -> None:
        pooled, self._pg = self._pg, None
        if pooled is not None:
            try:
                pooled.invalidate()  # closed, not returned to the pool
            except Exception:  # noqa: BLE001, S110 - it is being thrown away
                pass

    def verify(self, anchors: Sequence[dict] = ()) -> ChainReport:
        return verify_log(self._engine, self.keys, anchors)

    def checkpoint(self, *, only_if_moved: bool = False) -> dict | None:
        """Sign the chain's head now (`govern log checkpoint`; every `govern worker` pass with `only_if_moved`,
        which skips it when no record was written since the newest checkpoint). Returns the checkpoint."""
        kid, key = self.keys.active()
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
            cp = _insert_checkpoint(conn, kid, key, head_id, head_hash, self._clock.now())
            conn.commit()
        return cp

    def _insert_sql(self, dialect) -> str:
        sql = self._sql.get(dialect.name)
        if sql is None:
            quote = dialect.identifier_preparer.quote
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            # Column names from _COLUMNS (constants), quoted by the dialect; values are bound parameters.
            sql = self._sql[dialect.name] = (f"INSERT INTO decision ({', '.join(quote(c) for c in _COLUMNS)}) "  # noqa: S608
                                             f"VALUES ({', '.join([mark] * len(_COLUMNS))})")
        return sql

    def backlog(self) -> tuple[int, float]:
        """(records not yet written, age in seconds of the oldest of them), read by /metrics at scrape time.
        Unfinished tasks count the queued records and the batch being written (until it is written)."""
        oldest = self._writing_since
        with self._queue.mutex:
            stops = sum(1 for r in self._queue.queue if r is _STOP)
            depth = max(0, self._queue.unfinished_tasks - stops)
            if oldest is None:
                oldest = next((r.record["at"] for r in self._queue.queue if r is not _STOP), None)
        lag = max(0.0, (self._clock.now() - oldest).total_seconds()) if oldest is not None else 0.0
        return depth, lag

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every record appended so far is written. Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            if self._thread is None or not self._thread.is_alive():
                self._ensure_writer()
            self._wake.set()
            with self._queue.all_tasks_done:
                if self._queue.unfinished_tasks:
                    self._queue.all_tasks_done.wait(timeout=0.05)
        self._wake.clear()
        return True

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
        self._drop_pg_connection()
        atexit.unregister(self.close)


def _storable(record: dict[str, Any]) -> None:
    """Text a caller chose (a claimed client id, a scope, a path) is recorded as it came, but a NUL cannot be
    stored in a PostgreSQL text column: it is written as the visible `\\x00`, so the record (and the answer
    that waits for it) does not fail."""
    for key, value in record.items():
        if isinstance(value, str) and "\x00" in value:
            record[key] = value.replace("\x00", "\\x00")
        elif isinstance(value, list) and any(isinstance(v, str) and "\x00" in v for v in value):
            record[key] = [v.replace("\x00", "\\x00") if isinstance(v, str) else v for v in value]


_COLUMNS = HASHED_FIELDS + ("prev_hash", "hash")
_JSON_COLUMNS = frozenset(("scopes_requested", "scopes_granted", "rules"))


def _insert_checkpoint(conn, kid: str, key: bytes, head_id: int, head_hash: str, at: dt.datetime) -> dict:
    cp = {"key_id": kid, "head_id": head_id, "head_hash": head_hash, "at": at}
    cp["mac"] = checkpoint_mac(cp, key)
    result = conn.execute(sa.insert(table_of(DecisionCheckpoint)).values(**cp))
    cp["id"] = result.inserted_primary_key[0]
    return cp


def _driver_row(row: dict, sqlite: bool) -> tuple:
    """Values as SQLAlchemy would bind them: JSON text for JSON columns; on SQLite, timestamps in
    SQLAlchemy's storage format (UTC, no offset), so that ORM reads see the same values."""
    out = []
    for col in _COLUMNS:
        value = row[col]
        if col in _JSON_COLUMNS:
            value = json.dumps(list(value))
        elif col == "at" and sqlite:
            value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        out.append(value)
    return tuple(out)


def _aware(value):
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def iter_records(engine: sa.Engine, batch: int = 1000, after: int = 0) -> Iterator[dict]:
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


def checkpoints(engine: sa.Engine) -> list[dict]:
    table = table_of(DecisionCheckpoint)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    return [dict(r, at=_aware(r["at"])) for r in rows]


def verify_log(engine: sa.Engine, keys=None, anchors: Sequence[dict] = ()) -> ChainReport:
    """Verify every record and checkpoint (and `anchors`: checkpoints exported earlier and kept elsewhere)."""
    lookup = (lambda kid: None) if keys is None else keys.get
    return verify_chain(iter_records(engine), lookup, [*checkpoints(engine), *anchors])
