"""The rotation housekeeping of a worker pass: revoke previous versions after their overlap, re-send
reminders. A mixin of RotationService (govern.rotation.runner). Retiring signing keys is a worker job of
its own (govern.worker)."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.orm import Session
from sqlmodel import col, select

from govern.rotation import claims, machine
from govern.rotation.rotators import RotationContext
from govern.rotation.support import Outcome, describe_error, update, view
from govern.store.db import rows_matched
from govern.store.tables import RotationRun, SecretRef, SecretVersion

log = logging.getLogger("govern.rotation")


class Housekeeping:
    # Supplied by RotationService (govern.rotation.runner), the one class this mixes into.
    services: Any
    reminder_every: dt.timedelta
    _now: Callable[[], dt.datetime]
    _session: Callable[[], AbstractContextManager[Session]]
    _rotator: Callable[[str], Any]
    _notify: Callable[..., None]

    def revoke_expired(self) -> list[Outcome]:
        """Revoke previous versions whose overlap window is over (idempotent at the target)."""
        now = self._now()
        out: list[Outcome] = []
        while True:
            with self._session() as s:
                stmt = (select(SecretVersion).where(col(SecretVersion.stage) == "previous", col(SecretVersion.expires_at) <= now)
                        .order_by(col(SecretVersion.id)).limit(1))
                if claims.is_postgres(s):
                    stmt = stmt.with_for_update(skip_locked=True)
                sv = s.execute(stmt).scalar_one_or_none()
                if sv is None:
                    return out
                ref = s.get_one(SecretRef, sv.secret_ref_id)
                try:
                    rotator = self._rotator(ref.rotator or "static")
                    rotator.revoke_previous(RotationContext(ref=view(ref), run_id=None, services=self.services, now=now),
                                            sv.version)
                except Exception as exc:  # noqa: BLE001
                    err = describe_error(exc)
                    # Try again later rather than spin on it in this pass.
                    sv.expires_at = now + self.reminder_every
                    out.append(Outcome(ref.external_id, "failed", None, f"revoke of version {sv.version} failed: {err}"))
                    self._notify("rotation.failed", None, ref.external_id, step="revoke_previous", error=err)
                    continue
                sv.stage = "revoked"
                out.append(Outcome(ref.external_id, "revoked", None, f"version {sv.version}"))

    def send_reminders(self) -> int:
        """Re-send reminders for runs still waiting for an operator (once per reminder period)."""
        now = self._now()
        sent = 0
        with self._session() as s:
            rows = s.execute(select(RotationRun, SecretRef).join(SecretRef, col(SecretRef.id) == col(RotationRun.secret_ref_id))
                             .where(col(RotationRun.state) == machine.AWAITING, col(RotationRun.next_attempt_at) <= now)).all()
            for run, ref in rows:
                res = s.execute(update(RotationRun).where(col(RotationRun.id) == run.id,
                                                             col(RotationRun.next_attempt_at) == run.next_attempt_at)
                                .values(next_attempt_at=now + self.reminder_every))
                if rows_matched(res) == 1:
                    self._notify("rotation.reminder", run.id, ref.external_id, rotator=run.rotator,
                                 detail=f"still waiting for: govern rotate confirm {run.id}")
                    sent += 1
            # Secrets with a schedule but no rotator are rotated by hand: remind when due, then daily.
            due = s.execute(select(SecretRef).where(col(SecretRef.rotator).is_(None), col(SecretRef.schedule).is_not(None),
                                                    col(SecretRef.next_due_at) <= now)).scalars().all()
            for ref in due:
                res = s.execute(update(SecretRef).where(col(SecretRef.id) == ref.id,
                                                        col(SecretRef.next_due_at) == ref.next_due_at)
                                .values(next_due_at=now + self.reminder_every))
                if rows_matched(res) == 1:
                    self._notify("rotation.reminder", None, ref.external_id, rotator=None,
                                 detail=f"{ref.external_id} has no automatic rotator and is due (schedule "
                                        f"{ref.schedule}); rotate it at the target, then store the new value")
                    sent += 1
        return sent
