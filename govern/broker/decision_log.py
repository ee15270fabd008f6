"""DecisionLog: the append-only, keyed, hash-chained `decision` table (govern.domain.decision_chain).

`append` returns only once its record is committed (group commit, leader and followers): an appender that
finds no batch being written writes everything appended so far as one batch in one transaction; appenders
that arrive meanwhile wait, and when that batch is written the oldest of them writes the next one. Under
load many requests share one commit; when idle a record costs one commit of its own, written by its own
request thread (no hand-off to a writer thread). If the commit fails, every appender of that batch gets
`DecisionLogUnavailable` (503), so no answer goes out without its record.

Each batch is one transaction of the store (govern.store.decision_records, behind govern.ports.DecisionRecords):
the chain lock, the head, the records chained with HMAC-SHA256 under the active key
(govern.broker.decision_keys), and every `checkpoint_every` records (and at the first batch of each process)
a signed checkpoint.
`flush()` waits until nothing is unwritten (and writes what no appender waits for any more); `close()`
(registered with `services.close` and atexit) flushes; appends after it are written synchronously.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from _thread import allocate_lock as _allocate_lock
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

from govern.domain.decision_chain import STORE_DOWN_KEY_ID, ChainReport, derive_outcome, verify_chain
from govern.errors import GovernError, SecretStoreUnavailable
from govern.logs import current_correlation_id, new_correlation_id
from govern.ports import Clock, DecisionRecords

if TYPE_CHECKING:
    from govern.broker.decision_keys import DecisionKeys

log = logging.getLogger("govern.decisions")

class DecisionLogUnavailable(GovernError):
    code = "decision_log_unavailable"
    status = 503
    title = "The decision could not be recorded"

    def __init__(self, detail: str | None = None, **kw):
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(detail, **kw)


class _Pending:
    """One appender's record. `signal` is held from the start and released once: when the record's batch is
    written (`done`), or when this appender is to write the next batch (`lead`)."""

    __slots__ = ("record", "signal", "done", "lead", "abandoned", "error")

    def __init__(self, record: dict):
        self.record = record
        self.signal = _allocate_lock()
        self.signal.acquire()
        self.done = False
        self.lead = False
        self.abandoned = False  # its appender gave up waiting (503); the record is still written
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
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)  # notified when no batch is being written or led
        self._pending: list[_Pending] = []  # appended, not yet taken into a batch
        self._writing: list[_Pending] = []  # the batch being written
        self._leading = False  # an appender is writing a batch, or has been told to write the next one
        self._closed = False
        self._checkpointed = False  # this process has written its first checkpoint
        self._wake = threading.Event()  # set by flush/close: stop lingering
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
        with self._mutex:
            self._pending.append(pending)
            lead = not self._leading
            self._leading = True
        if lead or self._wait(pending):
            self._lead(pending)
        if pending.error is not None:
            raise DecisionLogUnavailable("the decision could not be recorded; retry later") from None

    # --- the group commit -------------------------------------------------------------------------
    # Leader and followers, without a writer thread: an appender that finds no batch being written writes
    # one itself (everything appended so far, its own record first in line); the appenders that arrive
    # meanwhile wait, and when the batch is written the oldest of them is told to write the next one. Under
    # load many records share a commit; one at a time, a record costs its commit and no hand-off between
    # threads (issue #20).

    def _wait(self, pending: _Pending) -> bool:
        """Wait until the record is written (False) or this appender is to lead the next batch (True)."""
        try:
            if pending.signal.acquire(timeout=self._commit_timeout):
                return pending.lead
        except BaseException:  # interrupted while waiting: if told to lead meanwhile, hand the lead on
            with self._mutex:
                pending.abandoned = True
                told = pending.lead and not pending.done
            if told:
                self._hand_on()
            raise
        if self._give_up(pending):
            return True
        if pending.done:
            return False
        # The record may still be committed later: then the log shows a decision whose answer was a 503,
        # never the other way round.
        log.error("decision log: a record was not committed in time",
                  extra={"timeout_seconds": self._commit_timeout})
        raise DecisionLogUnavailable("the decision could not be recorded in time; retry later")

    def _give_up(self, pending: _Pending) -> bool:
        """The wait ended without the signal: True if this appender was told to lead after all (it must),
        else it is marked as gone (so it is never told to lead) and the record stays in line."""
        with self._mutex:
            if pending.lead or pending.done:
                return pending.lead
            pending.abandoned = True
            return False

    def _lead(self, own: _Pending | None) -> None:
        """Write batches until `own` is written (None: until nothing is pending), then hand on the lead."""
        try:
            while True:
                if self._linger:
                    self._wake.wait(self._linger)
                with self._mutex:
                    batch = self._pending[:self._batch_size]
                    del self._pending[:len(batch)]
                    self._writing = batch
                if not batch:
                    return
                error: BaseException | None = None
                try:
                    self._commit([p.record for p in batch])
                except BaseException as exc:  # noqa: BLE001 - every appender of the batch fails with it
                    error = exc
                    log.error("decision log write failed; the batch's requests fail",
                              extra={"exc_type": type(exc).__name__, "records": len(batch)})
                with self._mutex:
                    self._writing = []
                    for p in batch:
                        p.error, p.done = error, True
                for p in batch:
                    if p is not own:
                        p.signal.release()
                if error is not None and not isinstance(error, Exception):
                    raise error  # an interrupt: its batch was answered as failed; the lead is handed on below
                if own is not None and own.done:
                    return
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        with self._mutex:
            for p in self._pending:
                if not p.abandoned:
                    p.lead = True
                    p.signal.release()
                    return
            # Nobody waits for what is left (if anything): the next appender or flush() writes it.
            self._leading = False
            self._idle.notify_all()

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
        """(records not yet written, age in seconds of the oldest of them), read by /metrics at scrape time:
        the records waiting for a batch and the batch being written (until it is written)."""
        with self._mutex:
            unwritten = self._writing + self._pending
        if not unwritten:
            return 0, 0.0
        lag = max(0.0, (self._clock.now() - unwritten[0].record["at"]).total_seconds())
        return len(unwritten), lag

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every record appended so far is written. Returns False on timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                with self._mutex:
                    if not self._leading:
                        if not self._pending:
                            return True
                        self._leading = True  # records nobody waits for: written here
                        lead = True
                    else:
                        lead = False
                        self._wake.set()
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        self._idle.wait(min(remaining, 0.05))
                if lead:
                    self._lead(None)
        finally:
            self._wake.clear()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
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
