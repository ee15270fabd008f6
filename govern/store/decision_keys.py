"""The `decision_log_key` table (govern.ports.DecisionKeyRecords): the decision chain's HMAC keys by key id,
and where each one's value lives in the secret store (never here)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.store.db import session_scope
from govern.store.tables import DecisionLogKey


class DecisionKeyRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def path_of(self, kid: str) -> str | None:
        with self.sessions() as s:
            row = s.get(DecisionLogKey, kid)
            return row.secret_path if row is not None else None

    def newest_active(self) -> str | None:
        with self.sessions() as s:
            return s.execute(sa.select(col(DecisionLogKey.kid)).where(col(DecisionLogKey.state) == "active")
                             .order_by(col(DecisionLogKey.created_at).desc(), col(DecisionLogKey.kid).desc())
                             .limit(1)).scalar()

    def add(self, kid: str, path: str, now: dt.datetime) -> None:
        with session_scope(self.sessions) as s:
            s.add(DecisionLogKey(kid=kid, secret_path=path, state="active", created_at=now))

    def retire_active(self) -> None:
        with session_scope(self.sessions) as s:
            for row in s.execute(sa.select(DecisionLogKey).where(col(DecisionLogKey.state) == "active")).scalars():
                row.state = "retired"

    def listing(self) -> list[dict[str, Any]]:
        with self.sessions() as s:
            rows = s.execute(sa.select(DecisionLogKey).order_by(col(DecisionLogKey.created_at))).scalars().all()
            return [{"kid": r.kid, "state": r.state, "created_at": r.created_at} for r in rows]
