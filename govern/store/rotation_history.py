"""Reading rotation history for the CLI, the API and the console (rows as plain dicts, never secrets)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from govern.domain.rotation import aware
from govern.errors import NotFound
from govern.store.db import session_scope
from govern.store.tables import RotationRun, SecretRef


def _row(run: RotationRun, ref: SecretRef) -> dict[str, Any]:
    return {"id": run.id, "secret": ref.external_id, "rotator": run.rotator, "state": run.state,
            "system": run.system_key, "attempts": run.attempts, "pending_version": run.pending_version,
            "next_attempt_at": aware(run.next_attempt_at), "claimed_by": run.claimed_by,
            "claimed_until": aware(run.claimed_until), "steps": run.steps or [], "error": run.error,
            "started_at": aware(run.started_at), "finished_at": aware(run.finished_at)}


def list_runs(sessions: sessionmaker[Session], *, secret: str | None = None, state: str | None = None,
              rotator: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    with session_scope(sessions) as s:
        stmt = select(RotationRun, SecretRef).join(SecretRef, col(SecretRef.id) == col(RotationRun.secret_ref_id))
        if secret:
            stmt = stmt.where(SecretRef.external_id == secret)
        if state:
            stmt = stmt.where(RotationRun.state == state)
        if rotator:
            stmt = stmt.where(RotationRun.rotator == rotator)
        stmt = stmt.order_by(col(RotationRun.id).desc()).limit(limit).offset(offset)
        return [_row(run, ref) for run, ref in s.execute(stmt).all()]


def get_run(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    with session_scope(sessions) as s:
        run = s.get(RotationRun, run_id)
        if run is None:
            raise NotFound(f"no rotation run {run_id}")
        return _row(run, s.get_one(SecretRef, run.secret_ref_id))
