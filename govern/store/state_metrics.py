"""Readers of durable state for the /metrics StateCollector: secrets due, open findings."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.store.tables import Finding, SecretRef, utcnow


def secrets_due(sessions: sessionmaker[Session], now: dt.datetime | None = None) -> dict[tuple, float]:
    """Secrets whose rotation is due (next_due_at passed) and overdue (passed by more than a day)."""
    now = now or utcnow()
    with sessions() as s:
        due = s.execute(sa.select(sa.func.count()).where(col(SecretRef.next_due_at) <= now)).scalar_one()
        overdue = s.execute(sa.select(sa.func.count()).where(
            col(SecretRef.next_due_at) <= now - dt.timedelta(days=1))).scalar_one()
    return {("due",): float(due), ("overdue",): float(overdue)}


def open_findings(sessions: sessionmaker[Session]) -> dict[tuple, float]:
    with sessions() as s:
        rows = s.execute(sa.select(col(Finding.severity), sa.func.count()).where(col(Finding.status) == "open")
                         .group_by(col(Finding.severity))).all()
    counts = {sev: 0.0 for sev in ("critical", "high", "medium", "low", "info")}
    counts.update({sev: float(n) for sev, n in rows})
    return {(sev,): n for sev, n in counts.items()}
