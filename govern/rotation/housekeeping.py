"""The rotation housekeeping of a worker pass: revoke previous versions after their overlap, re-send
reminders. A mixin of RotationService (govern.rotation.runner). Retiring signing keys is a worker job of
its own (govern.worker)."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from govern.domain.rotation import SecretRefView
from govern.ports import RotationRepository
from govern.rotation.collaborators import RotationCollaborators
from govern.rotation.rotators import RotationContext
from govern.rotation.support import Outcome, describe_error

log = logging.getLogger("govern.rotation")


class Housekeeping:
    # Supplied by RotationService (govern.rotation.runner), the one class this mixes into.
    collaborators: RotationCollaborators
    repo: RotationRepository
    reminder_every: dt.timedelta
    _now: Callable[[], dt.datetime]
    _rotator: Callable[[str], Any]
    _notify: Callable[..., None]

    def revoke_expired(self) -> list[Outcome]:
        """Revoke previous versions whose overlap window is over (idempotent at the target). Each version
        is locked while its rotator revokes it, so two workers never revoke the same one."""
        now = self._now()
        out: list[Outcome] = []

        def revoke(ref: SecretRefView, version: int) -> dt.datetime | None:
            try:
                rotator = self._rotator(ref.rotator or "static")
                rotator.revoke_previous(RotationContext(ref=ref, run_id=None, collaborators=self.collaborators,
                                                         now=now), version)
            except Exception as exc:  # noqa: BLE001
                err = describe_error(exc)
                out.append(Outcome(ref.external_id, "failed", None, f"revoke of version {version} failed: {err}"))
                self._notify("rotation.failed", None, ref.external_id, step="revoke_previous", error=err)
                return now + self.reminder_every  # try again later rather than spin on it in this pass
            out.append(Outcome(ref.external_id, "revoked", None, f"version {version}"))
            return None

        while self.repo.revoke_next_expired(now, revoke):
            pass
        return out

    def send_reminders(self) -> int:
        """Re-send reminders for runs still waiting for an operator, and for due secrets rotated by hand
        (once per reminder period: each reminder is taken by one worker)."""
        now = self._now()
        reminders = self.repo.take_reminders(now, now + self.reminder_every)
        for r in reminders:
            if r.run_id is not None:
                self._notify("rotation.reminder", r.run_id, r.secret, rotator=r.rotator,
                             detail=f"still waiting for: govern rotate confirm {r.run_id}")
            else:
                self._notify("rotation.reminder", None, r.secret, rotator=None,
                             detail=f"{r.secret} has no automatic rotator and is due (schedule "
                                    f"{r.schedule}); rotate it at the target, then store the new value")
        return len(reminders)
