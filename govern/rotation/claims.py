"""Claiming work so that any number of workers cooperate without a coordinator.

PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED` picks a row no other worker is looking at, and a lease
(`claimed_until`) lets the next worker resume a run whose worker died. SQLite has one writer at a time,
so a single conditional `UPDATE ... WHERE claimed_until IS NULL OR claimed_until < now` is the claim;
its row count says whether this worker won.
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from govern.rotation import machine
from govern.rotation.support import update
from govern.store.db import rows_matched
from govern.store.tables import RotationRun

RUNNABLE = (machine.CREATED, machine.PENDING, machine.SET, machine.TESTED)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _claimable(now: dt.datetime, *, ignore_backoff: bool = False):
    return sa.and_(
        col(RotationRun.state).in_(RUNNABLE),
        sa.true() if ignore_backoff else
        sa.or_(col(RotationRun.next_attempt_at).is_(None), col(RotationRun.next_attempt_at) <= now),
        sa.or_(col(RotationRun.claimed_until).is_(None), col(RotationRun.claimed_until) < now),
    )


def claim_next(session: Session, worker: str, now: dt.datetime, lease: dt.timedelta,
               only: int | None = None, *, ignore_backoff: bool = False) -> int | None:
    """Claim one runnable run (or the run `only`) for `worker`; the caller commits. A run still leased to
    a live worker is never claimed; `ignore_backoff` (an operator asking for this run by name) does not
    wait for a failed step's retry time."""
    cond = _claimable(now, ignore_backoff=ignore_backoff)
    if only is not None:
        cond = sa.and_(cond, col(RotationRun.id) == only)
    values = {"claimed_by": worker, "claimed_until": now + lease}
    if is_postgres(session):
        stmt = (select(col(RotationRun.id)).where(cond).order_by(col(RotationRun.next_attempt_at), col(RotationRun.id))
                .limit(1).with_for_update(skip_locked=True))
        run_id = session.execute(stmt).scalar_one_or_none()
        if run_id is None:
            return None
        session.execute(update(RotationRun).where(col(RotationRun.id) == run_id).values(**values))
        return run_id
    candidates = session.execute(select(col(RotationRun.id)).where(cond).order_by(col(RotationRun.id)).limit(10)).scalars().all()
    for run_id in candidates:
        res = session.execute(update(RotationRun).where(col(RotationRun.id) == run_id, cond).values(**values))
        if rows_matched(res) == 1:
            return run_id
    return None


def lock_system(session: Session, system_key: str) -> None:
    """Serialise run creation per system (PostgreSQL advisory transaction lock; SQLite already has one writer)."""
    if is_postgres(session):
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "govern.rotation:" + system_key})
