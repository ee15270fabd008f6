"""DecisionLog: the append-only, hash-chained `decision` table (govern.domain.decision_chain).

`append` only puts a record on an in-process queue; a background writer thread drains the queue in
batches, so writing the log never serialises the hot path. Each batch is one transaction that:
1. takes the chain lock: `pg_advisory_xact_lock` on PostgreSQL, the database write lock
   (`BEGIN IMMEDIATE`) on SQLite, so writers in several processes never fork the chain;
2. reads the last record's id and hash inside that transaction;
3. assigns consecutive ids, chains the hashes, and inserts the batch.
`flush()` waits until everything queued has been written; `close()` (registered with
`services.close` and atexit) flushes, then stops the writer: a clean shutdown loses no record.
If the database is unreachable the writer keeps the batch and retries with backoff.
"""
from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import queue
import threading
import time
from typing import Any, Iterator

import sqlalchemy as sa

from govern.domain.decision_chain import GENESIS, HASHED_FIELDS, record_hash, verify_chain, ChainReport
from govern.logs import current_correlation_id, new_correlation_id
from govern.store.tables import Decision

log = logging.getLogger("govern.decisions")

ADVISORY_LOCK_KEY = 0x676F76_6C6F67  # "gov" "log": one chain per database
_STOP = object()


class ChainedDecisionLog:
    def __init__(self, engine: sa.Engine, clock, *, batch_size: int = 500, linger_seconds: float = 0.05):
        self._engine = engine
        self._clock = clock
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._wake = threading.Event()  # set by flush/close: stop lingering
        self._table = Decision.__table__
        self._writing_since: Any = None  # `at` of the oldest record of the batch being written (for backlog())
        self._sql: dict[str, str] = {}
        atexit.register(self.close)

    # --- the hot path ---------------------------------------------------------------------------

    def append(self, request=None, decision=None, **fields: Any) -> None:
        record: dict[str, Any] = {
            "at": self._clock.now(),
            "correlation_id": current_correlation_id() or new_correlation_id(),
            "integration_user": None, "action": "token", "named_credential": None, "principal": None,
            "method": None, "path": None, "resource_object": None, "api_type": None,
            "scopes_requested": [], "scopes_granted": [], "source_ip": None, "allowed": False, "rules": [],
            "upstream_status": None, "latency_ms": None,
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
        if record["latency_ms"] is not None:
            record["latency_ms"] = round(float(record["latency_ms"]), 3)
        if record["path"] and len(record["path"]) > 2000:
            record["path"] = record["path"][:2000]
        if self._closed:
            self._write([record])  # after shutdown: synchronously, never dropped
            return
        self._ensure_writer()
        self._queue.put(record)

    # --- the writer ------------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="govern-decision-log", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            self._writing_since = first["at"]  # taken off the queue, not yet written
            # Linger briefly so that a burst becomes one batch and appenders never wake the writer per record.
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
            while True:
                try:
                    self._write(batch)
                    backoff = 0.1
                    break
                except Exception as exc:  # noqa: BLE001 - keep the records and retry; never drop them
                    log.error("decision log write failed; retrying", extra={"exc_type": type(exc).__name__,
                                                                            "records": len(batch)})
                    if self._closed:  # shutting down: say how many are lost rather than hang the exit
                        log.error("decision log: records could not be written at shutdown",
                                  extra={"records": len(batch)})
                        break
                    time.sleep(backoff)  # a retry backoff, not a wait for a result
                    backoff = min(backoff * 2, 5.0)
            self._writing_since = None
            for _ in batch:
                self._queue.task_done()
            if stop:
                self._queue.task_done()
                return

    def _write(self, batch: list[dict]) -> None:
        with self._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            last = conn.execute(sa.select(self._table.c.id, self._table.c.hash)
                                .order_by(self._table.c.id.desc()).limit(1)).first()
            last_id, prev = (last[0], last[1]) if last else (0, GENESIS)
            rows = []
            sqlite = conn.dialect.name == "sqlite"
            for rec in batch:
                last_id += 1
                row = dict(rec, id=last_id, prev_hash=prev)
                row["hash"] = prev = record_hash(row, prev)
                rows.append(_driver_row(row, sqlite))
            # The driver's executemany, not the ORM: this is the log's whole cost per record.
            conn.exec_driver_sql(self._insert_sql(conn.dialect), rows)
            if conn.dialect.name == "postgresql":
                # Ids are assigned here, under the lock; keep the column's sequence in step with them.
                conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('decision', 'id'), :v)"), {"v": last_id})
            conn.commit()

    def _insert_sql(self, dialect) -> str:
        sql = self._sql.get(dialect.name)
        if sql is None:
            quote = dialect.identifier_preparer.quote
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            sql = self._sql[dialect.name] = (f"INSERT INTO decision ({', '.join(quote(c) for c in _COLUMNS)}) "
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
                oldest = next((r["at"] for r in self._queue.queue if r is not _STOP), None)
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
        atexit.unregister(self.close)


_COLUMNS = HASHED_FIELDS + ("prev_hash", "hash")
_JSON_COLUMNS = frozenset(("scopes_requested", "scopes_granted", "rules"))


def _driver_row(row: dict, sqlite: bool) -> tuple:
    """Values as SQLAlchemy would bind them: JSON text for JSON columns; on SQLite, timestamps in
    SQLAlchemy's storage format (UTC, no offset), so that ORM reads see the same values."""
    out = []
    for col in _COLUMNS:
        value = row[col]
        if col in _JSON_COLUMNS:
            value = json.dumps(list(value))
        elif col == "at" and sqlite:
            value = value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        out.append(value)
    return tuple(out)


def iter_records(engine: sa.Engine, batch: int = 1000) -> Iterator[dict]:
    """Every decision record in id order, read in batches (keyset pagination): constant memory."""
    table = Decision.__table__
    cols = [table.c[name] for name in HASHED_FIELDS] + [table.c.prev_hash, table.c.hash]
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(table.c.id > last).order_by(table.c.id).limit(batch)).mappings().all()
        if not rows:
            return
        for row in rows:
            rec = dict(row)
            if isinstance(rec["at"], dt.datetime) and rec["at"].tzinfo is None:
                rec["at"] = rec["at"].replace(tzinfo=dt.timezone.utc)
            yield rec
        last = rows[-1]["id"]


def verify_log(engine: sa.Engine) -> ChainReport:
    return verify_chain(iter_records(engine))
