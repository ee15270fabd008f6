"""DecisionLog: the append-only, keyed, hash-chained `decision` table (govern.domain.decision_chain).

`append` returns only once its record is committed (group commit): the request thread puts the record
on a queue and waits; one writer thread takes everything queued, writes it as one batch in one
transaction and wakes every waiter of the batch. Under load many requests share one commit; when idle a
record costs one commit of its own. If the commit fails, every appender of that batch gets
`DecisionLogUnavailable` (503), so no answer goes out without its record.

Each batch is one transaction of the store (govern.store.decision_records, behind govern.ports.DecisionRecords):
the chain lock, the head, the records chained with HMAC-SHA256 under the active key
(govern.broker.decision_keys), and every `checkpoint_every` records (and at the first batch of each writer)
a signed checkpoint.
`flush()` waits until nothing is queued; `close()` (registered with `services.close` and atexit) flushes,
then stops the writer.
"""
from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

from govern.domain.decision_chain import STORE_DOWN_KEY_ID, ChainReport, derive_outcome, verify_chain
from govern.errors import GovernError, SecretStoreUnavailable
from govern.logs import current_correlation_id, new_correlation_id
from govern.ports import Clock, DecisionRecords

if TYPE_CHECKING:
    from govern.broker.decision_keys import DecisionKeys

log = logging.getLogger("govern.decisions")

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
    def __init__(self, records: DecisionRecords, clock: Clock, keys: DecisionKeys, *, batch_size: int = 500,
                 linger_seconds: float = 0.0, commit_timeout: float = 30.0, checkpoint_every: int = 1000):
        self.records = records  # govern.store.decision_records
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
        self._writing_since: Any = None  # `at` of the oldest record of the batch being written (for backlog())
        self._write_lock = threading.Lock()
        # Bound once: the writer hands them to the store with every batch.
        self._checkpoint_after: Callable[[int, int], bool] = self._checkpoint_due
        self._now: Callable[[], Any] = clock.now
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
        self.records.append_chained(batch, kid, key, checkpoint=self._checkpoint_after, now=self._now)
        self._checkpointed = True
        self.commits += 1

    def _checkpoint_due(self, first_id: int, last_id: int) -> bool:
        """A signed checkpoint after the batch: at the first batch of this writer, then every `checkpoint_every`."""
        every = self._checkpoint_every
        return not self._checkpointed or bool(every and last_id // every > first_id // every)

    def verify(self, anchors: Sequence[dict] = ()) -> ChainReport:
        return verify_log(self.records, self.keys, anchors)

    def checkpoint(self, *, only_if_moved: bool = False) -> dict | None:
        """Sign the chain's head now (`govern log checkpoint`; every `govern worker` pass with `only_if_moved`,
        which skips it when no record was written since the newest checkpoint). Returns the checkpoint."""
        kid, key = self.keys.active()
        return self.records.checkpoint(kid, key, self._clock.now(), only_if_moved=only_if_moved)

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
        self.records.close()
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


def verify_log(records: DecisionRecords, keys: DecisionKeys | None = None, anchors: Sequence[dict] = ()) -> ChainReport:
    """Verify every record and checkpoint (and `anchors`: checkpoints exported earlier and kept elsewhere)."""
    lookup = (lambda kid: None) if keys is None else keys.get
    return verify_chain(records.iter_records(), lookup, [*records.checkpoints(), *anchors])
