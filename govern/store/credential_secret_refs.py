"""SecretRef and SecretVersion rows of external credentials (govern.ports.CredentialSecretRefs): where each
secret field of a credential (and principal) lives in the secret store, and its staged versions.

Rows are found by their columns (owner_kind "credential", owner, principal, field), so a row written by
`govern secrets put` (named by govern.secrets.service.secret_ref_name) is found as well as one the upstream
token broker creates itself (`credential/<credential>/<principal or "-">/<field>`).
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.ports import CredentialSecretRef, StagedVersion
from govern.store.db import row_id, session_scope
from govern.store.tables import ExternalCredential, SecretRef, SecretVersion


class CredentialSecretRefRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    @staticmethod
    def _ref(session: Session, credential: str, principal: str | None, field: str) -> SecretRef | None:
        """The newest by set_at (then id): found by its columns, not its external id."""
        query = sa.select(SecretRef).where(
            col(SecretRef.owner_kind) == "credential", col(SecretRef.owner) == credential, col(SecretRef.field) == field,
            col(SecretRef.principal).is_(None) if principal is None else col(SecretRef.principal) == principal)
        return session.execute(query.order_by(col(SecretRef.set_at).desc().nulls_last(), col(SecretRef.id).desc())
                               .limit(1)).scalar_one_or_none()

    def find(self, credential: str, principal: str | None, field: str, *,
             with_versions: bool = False) -> CredentialSecretRef | None:
        """The ref; `with_versions`: also its versions staged current and previous, and the credential's
        rotation overlap (read in the same session)."""
        with self.sessions() as session:
            ref = self._ref(session, credential, principal, field)
            if ref is None:
                return None
            staged: tuple[StagedVersion, ...] = ()
            overlap = None
            if with_versions:
                staged = tuple(StagedVersion(v.version, v.stage, _aware(v.expires_at))
                               for v in session.execute(sa.select(SecretVersion).where(
                                   col(SecretVersion.secret_ref_id) == ref.id,
                                   col(SecretVersion.stage).in_(("current", "previous")))).scalars())
                rotation = session.execute(sa.select(col(ExternalCredential.rotation)).where(
                    col(ExternalCredential.external_id) == credential)).scalar_one_or_none() or {}
                overlap = rotation.get("overlap") or None
            return CredentialSecretRef(row_id(ref), ref.path, ref.current_version, _aware(ref.set_at), staged, overlap)

    def newest_path(self, credential: str, principal: str | None, field: str) -> str | None:
        """The path of the newest ref by id (the proxy's injection reads static secrets by it)."""
        query = sa.select(col(SecretRef.path)).where(
            col(SecretRef.owner_kind) == "credential", col(SecretRef.owner) == credential, col(SecretRef.field) == field,
            col(SecretRef.principal).is_(None) if principal is None
            else col(SecretRef.principal) == principal).order_by(col(SecretRef.id).desc()).limit(1)
        with self.sessions() as session:
            return session.execute(query).scalar()

    def record_version(self, credential: str, principal: str | None, field: str, *, path: str, store: str,
                       version: int, now: dt.datetime) -> None:
        """Stage `version` current and the one it replaces previous (creating the ref on first use)."""
        with session_scope(self.sessions) as session:
            ref = self._ref(session, credential, principal, field)
            if ref is None:
                ref = SecretRef(external_id=path, owner_kind="credential", owner=credential, principal=principal,
                                field=field, store=store, path=path)
                session.add(ref)
                session.flush()
            for old in session.execute(sa.select(SecretVersion).where(
                    col(SecretVersion.secret_ref_id) == ref.id,
                    col(SecretVersion.stage).in_(("current", "previous")))).scalars():
                old.stage = "previous" if old.stage == "current" else "revoked"
            session.add(SecretVersion(secret_ref_id=row_id(ref), version=version, stage="current"))
            ref.current_version = version
            ref.set_at = now


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value
