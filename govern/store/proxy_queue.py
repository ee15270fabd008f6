"""The proxy's `queued_call` and `dead_letter` tables (govern.ports.ProxyQueueStore): calls held during a
maintenance window, delivered in order afterwards, and calls that kept failing. Rows go out as
govern.ports.QueuedCallRecord values, never as rows."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.ports import QueuedCallRecord
from govern.store.db import row_id, session_scope
from govern.store.proxy_tables import DeadLetter, QueuedCall
from govern.store.tables import utcnow


class ProxyQueueRepo:
    def __init__(self, sessions: sessionmaker[Session], *, row_locks: bool):
        self.sessions = sessions
        self.row_locks = row_locks  # PostgreSQL: claim due calls with FOR UPDATE SKIP LOCKED

    def enqueue(self, call: QueuedCallRecord) -> int:
        with session_scope(self.sessions) as session:
            row = QueuedCall(named_credential=call.named_credential, system=call.system, caller=call.caller,
                             principal=call.principal, method=call.method, path=call.path, query=call.query,
                             headers=dict(call.headers), body=call.body, correlation_id=call.correlation_id,
                             idempotency_key=call.idempotency_key, source_ip=call.source_ip,
                             scopes=list(call.scopes), next_attempt_at=call.next_attempt_at or utcnow())
            session.add(row)
            session.flush()
            return row_id(row)

    def queued(self, call_id: int) -> QueuedCallRecord | None:
        with self.sessions() as session:
            row = session.get(QueuedCall, call_id)
            return _queued(row) if row is not None else None

    def dead_letter_of(self, call_id: int) -> QueuedCallRecord | None:
        with self.sessions() as session:
            dead = session.execute(sa.select(DeadLetter).where(col(DeadLetter.queued_call_id) == call_id)).scalars().first()
            return _dead(dead) if dead is not None else None

    @contextmanager
    def claim_due(self, limit: int) -> Iterator[_DueCalls]:
        """Queued calls in arrival order (held with row locks on PostgreSQL until the round ends)."""
        with self.sessions() as session:
            query = sa.select(QueuedCall).where(col(QueuedCall.status) == "queued").order_by(col(QueuedCall.id)).limit(limit)
            if self.row_locks:
                query = query.with_for_update(skip_locked=True)
            due = _DueCalls(session, list(session.execute(query).scalars().all()))
            yield due
            session.commit()

    @contextmanager
    def claim_dead(self, dead_id: int) -> Iterator[_DeadClaim]:
        with session_scope(self.sessions) as session:
            yield _DeadClaim(session, session.get(DeadLetter, dead_id))

    def dead_letters(self) -> list[QueuedCallRecord]:
        with self.sessions() as session:
            return [_dead(d) for d in session.execute(sa.select(DeadLetter).order_by(col(DeadLetter.id))).scalars().all()]

    def drop_dead(self, dead_id: int) -> bool:
        with session_scope(self.sessions) as session:
            dead = session.get(DeadLetter, dead_id)
            if dead is None:
                return False
            session.delete(dead)
            return True


class _DueCalls:
    def __init__(self, session: Session, rows: list[QueuedCall]):
        self._session = session
        self._rows = {row_id(r): r for r in rows}
        self.calls = [_queued(r) for r in rows]

    def delivered(self, call_id: int, status: int, attempts: int, now: dt.datetime) -> None:
        row = self._rows[call_id]
        row.status, row.response_status, row.delivered_at, row.attempts = "delivered", status, now, attempts
        self._session.add(row)

    def retry_later(self, call_id: int, until: dt.datetime, error: str, attempts: int) -> None:
        row = self._rows[call_id]
        row.next_attempt_at, row.last_error, row.attempts = until, error, attempts
        self._session.add(row)

    def bury(self, call_id: int, reason: str, attempts: int, now: dt.datetime) -> None:
        row = self._rows[call_id]
        row.attempts, row.last_error = attempts, reason
        self._session.add(DeadLetter(queued_call_id=row.id, named_credential=row.named_credential, system=row.system,
                                     caller=row.caller, principal=row.principal, method=row.method, path=row.path,
                                     query=row.query, headers=row.headers, body=row.body,
                                     correlation_id=row.correlation_id, idempotency_key=row.idempotency_key,
                                     attempts=row.attempts, reason=reason, last_status=row.response_status,
                                     source_ip=row.source_ip, scopes=row.scopes))
        row.status = "dead"
        self._session.add(row)


class _DeadClaim:
    def __init__(self, session: Session, dead: DeadLetter | None):
        self._session = session
        self._dead = dead
        self.call = _dead(dead) if dead is not None else None

    def delivered(self, status: int) -> None:
        dead = self._dead
        if dead is None:
            return
        if dead.queued_call_id:
            original = self._session.get(QueuedCall, dead.queued_call_id)
            if original is not None:
                original.status, original.response_status = "delivered", status
                self._session.add(original)
        self._session.delete(dead)

    def failed(self, reason: str) -> None:
        dead = self._dead
        if dead is None:
            return
        dead.attempts += 1
        dead.reason = reason
        self._session.add(dead)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _queued(row: QueuedCall) -> QueuedCallRecord:
    return QueuedCallRecord(
        id=row_id(row), named_credential=row.named_credential, system=row.system, caller=row.caller,
        principal=row.principal, method=row.method, path=row.path, query=row.query, headers=dict(row.headers),
        body=row.body, correlation_id=row.correlation_id, idempotency_key=row.idempotency_key,
        source_ip=row.source_ip, scopes=tuple(row.scopes or ()), attempts=row.attempts,
        next_attempt_at=_aware(row.next_attempt_at), status=row.status, response_status=row.response_status,
        created_at=_aware(row.created_at))


def _dead(row: DeadLetter) -> QueuedCallRecord:
    return QueuedCallRecord(
        id=row_id(row), named_credential=row.named_credential, system=row.system, caller=row.caller,
        principal=row.principal, method=row.method, path=row.path, query=row.query, headers=dict(row.headers),
        body=row.body, correlation_id=row.correlation_id, idempotency_key=row.idempotency_key,
        source_ip=row.source_ip, scopes=tuple(row.scopes or ()), attempts=row.attempts,
        last_status=row.last_status, reason=row.reason, queued_call_id=row.queued_call_id,
        created_at=_aware(row.created_at), status="dead")
