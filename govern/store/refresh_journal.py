"""The refresh journal's rows (govern.ports.RefreshJournal): every refresh-token grant attempt is recorded
BEFORE the upstream is called.

With rotating refresh tokens, an attempt whose answer never reached the vault (the worker died, the
connection dropped after the upstream committed) leaves govern holding a refresh token the upstream may
have revoked. The journal makes that visible: such an attempt ends `in_doubt` (or stays `started` when
the worker died; a `started` row seen by the next lock holder is in doubt by definition, because only a
lock holder writes rows). The next attempt reconciles: see govern.broker.upstream.service.
"""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.ports import IN_DOUBT, STARTED, Clock, RefreshAttempt
from govern.store.db import row_id, session_scope
from govern.store.upstream_tables import RefreshJournal


class RefreshJournalRepo:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, worker: str):
        self.sessions = sessions
        self.clock = clock
        self.worker = worker

    def unresolved(self, credential: str, principal: str) -> list[RefreshAttempt]:
        """Attempts that never reached a known outcome (started by a dead worker, or in doubt)."""
        with self.sessions() as session:
            rows = session.execute(sa.select(RefreshJournal).where(
                col(RefreshJournal.credential) == credential, col(RefreshJournal.principal) == principal,
                col(RefreshJournal.state).in_((STARTED, IN_DOUBT))).order_by(col(RefreshJournal.id))).scalars()
            return [RefreshAttempt(row_id(r), r.attempt_id, r.state) for r in rows]

    def start(self, credential: str, principal: str, old_version: int | None) -> str:
        attempt = uuid.uuid4().hex
        with session_scope(self.sessions) as session:
            session.add(RefreshJournal(attempt_id=attempt, credential=credential, principal=principal,
                                       state=STARTED, old_version=old_version, worker=self.worker,
                                       started_at=self.clock.now()))
        return attempt

    def finish(self, attempt: str, state: str, *, new_version: int | None = None, error: str | None = None) -> None:
        with session_scope(self.sessions) as session:
            row = session.execute(sa.select(RefreshJournal).where(col(RefreshJournal.attempt_id) == attempt)).scalar_one()
            row.state = state
            row.new_version = new_version
            row.error = error
            row.finished_at = self.clock.now()

    def resolve(self, ids: list[int], state: str, error: str | None = None) -> None:
        """Close reconciled attempts (their outcome is now known from the attempt that followed)."""
        if not ids:
            return
        with session_scope(self.sessions) as session:
            for row in session.execute(sa.select(RefreshJournal).where(col(RefreshJournal.id).in_(ids))).scalars():
                row.state = state
                row.error = error
                row.finished_at = row.finished_at or self.clock.now()
