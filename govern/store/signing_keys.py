"""The `signing_key` table (govern.ports.SigningKeyRecords): govern's access-token key set. The private half
of each key lives in the secret store at `secret_path`, never here."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.ports import SigningKeyRecord
from govern.store.broker_tables import SigningKey
from govern.store.db import session_scope


class SigningKeyRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def retire_due(self, now: dt.datetime) -> list[SigningKeyRecord]:
        with session_scope(self.sessions) as s:
            return self._retire_due(s, now)

    @staticmethod
    def _retire_due(s: Session, now: dt.datetime) -> list[SigningKeyRecord]:
        due = s.execute(sa.select(SigningKey).where(col(SigningKey.state) == "retiring",
                                                    col(SigningKey.retire_after) <= now)).scalars().all()
        for row in due:
            row.state, row.retired_at = "retired", now
        return [_record(r) for r in due]

    def published(self) -> list[SigningKeyRecord]:
        with self.sessions() as s:
            rows = s.execute(sa.select(SigningKey).where(col(SigningKey.state).in_(("active", "retiring")))
                             .order_by(col(SigningKey.created_at).desc(), col(SigningKey.id).desc())).scalars().all()
            return [_record(r) for r in rows]

    def active_or_create(self, create: Callable[[], SigningKeyRecord]) -> SigningKeyRecord:
        with session_scope(self.sessions) as s:
            row = s.execute(sa.select(SigningKey).where(col(SigningKey.state) == "active")
                            .order_by(col(SigningKey.created_at).desc(), col(SigningKey.id).desc())).scalars().first()
            if row is not None:
                return _record(row)
            return self._add(s, create())

    def rotate(self, retire_after: dt.datetime, create: Callable[[], SigningKeyRecord]) -> SigningKeyRecord:
        with session_scope(self.sessions) as s:
            for row in s.execute(sa.select(SigningKey).where(col(SigningKey.state) == "active")).scalars():
                row.state = "retiring"
                row.retire_after = retire_after
            return self._add(s, create())

    @staticmethod
    def _add(s: Session, key: SigningKeyRecord) -> SigningKeyRecord:
        s.add(SigningKey(kid=key.kid, alg=key.alg, public_jwk=key.public_jwk, secret_path=key.secret_path,
                         state=key.state, created_at=key.created_at or dt.datetime.now(dt.UTC)))
        s.flush()
        return key


def _record(row: SigningKey) -> SigningKeyRecord:
    return SigningKeyRecord(row.kid, dict(row.public_jwk), row.secret_path, row.state, _aware(row.retire_after),
                            row.alg, _aware(row.created_at))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes
    return value
