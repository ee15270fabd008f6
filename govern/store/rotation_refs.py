"""The stored secrets' derived rotation settings (govern.ports.RotationSettingsRows), read and written in the
caller's session: `govern.landscape.apply_document` and `SecretService` sync them in their own transaction
(govern.rotation.sync decides what they should be). Rows are changed through the session's own objects, so a
caller holding a SecretRef of that session sees the new settings."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session
from sqlmodel import col, select

from govern.domain.rotation import ACTIVE, RefRotationInputs, RefRotationSettings, aware
from govern.ports import RotationSettingsRows
from govern.store.tables import ExternalCredential, IntegrationUser, RotationRun, SecretRef


class SqlRotationSettingsRows:
    def __init__(self, session: Session):
        self._session = session

    def load(self, *, ref_ids: Iterable[int] = (), credentials: Iterable[str] = (),
             users: Iterable[str] = ()) -> list[RefRotationInputs]:
        s = self._session
        refs: dict[int, SecretRef] = {}
        for ref_id in ref_ids:
            ref = s.get(SecretRef, ref_id)
            if ref is not None and ref.id is not None:
                refs[ref.id] = ref
        for kind, owners in (("credential", sorted(set(credentials))), ("integration_user", sorted(set(users)))):
            if owners:
                for ref in s.execute(select(SecretRef).where(SecretRef.owner_kind == kind,
                                                             col(SecretRef.owner).in_(owners))).scalars():
                    if ref.id is not None:
                        refs.setdefault(ref.id, ref)
        if not refs:
            return []
        cred_owners = sorted({r.owner for r in refs.values() if r.owner_kind == "credential"})
        creds = {c.external_id: (c.protocol, c.rotation) for c in s.execute(select(ExternalCredential).where(
            col(ExternalCredential.external_id).in_(cred_owners))).scalars()} if cred_owners else {}
        user_owners = sorted({r.owner for r in refs.values() if r.owner_kind == "integration_user"})
        user_rotation: dict[str, dict[str, Any]] = dict(s.execute(
            select(IntegrationUser.external_id, IntegrationUser.rotation)
            .where(col(IntegrationUser.external_id).in_(user_owners))).all()) if user_owners else {}
        active = set(s.execute(select(RotationRun.secret_ref_id).where(
            col(RotationRun.secret_ref_id).in_(list(refs)), col(RotationRun.state).in_(ACTIVE))).scalars())
        out = []
        for ref_id, ref in refs.items():
            protocol, rotation = None, None
            if ref.owner_kind == "credential" and ref.owner in creds:
                protocol, rotation = creds[ref.owner]
            elif ref.owner_kind == "integration_user":
                rotation = user_rotation.get(ref.owner)
            out.append(RefRotationInputs(ref_id=ref_id, owner_kind=ref.owner_kind, owner=ref.owner, field=ref.field,
                                         rotator=ref.rotator, schedule=ref.schedule, overlap_seconds=ref.overlap_seconds,
                                         next_due_at=aware(ref.next_due_at), set_at=aware(ref.set_at),
                                         protocol=protocol, rotation=rotation, run_active=ref_id in active))
        return out

    def save(self, settings: RefRotationSettings) -> None:
        ref = self._session.get_one(SecretRef, settings.ref_id)
        ref.rotator, ref.schedule = settings.rotator, settings.schedule
        ref.overlap_seconds, ref.next_due_at = settings.overlap_seconds, settings.next_due_at
        self._session.add(ref)


if TYPE_CHECKING:  # mypy checks the adapter against its port
    _PORT: type[RotationSettingsRows] = SqlRotationSettingsRows
