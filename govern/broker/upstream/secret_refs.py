"""Secret material of external credentials, addressed through SecretRef rows and read from the secret store.

SecretRef rows are found by their columns (owner_kind "credential", owner, principal, field), so a row
written by `govern secrets put` (named by govern.secrets.service.secret_ref_name) is found as well as one
this module creates itself (`credential/<credential>/<principal or "-">/<field>`). Fields: client_secret,
private_key, refresh_token, password, api_key, value.
During a rotation overlap a secret has SecretVersion rows staged `current` and `previous`:
`candidates` lists the versions newest first so a caller can fall back on invalid_client; the previous
version only while the credential's `rotation.overlap` lasts. The
upstream_client_secret rotator's `ordered_secrets` is this same list (govern.rotation.rotators.upstream).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import cast
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col

from govern.domain.secret import Secret
from govern.errors import ConfigurationError, SecretConflict
from govern.ports import Clock, SecretStore
from govern.store.db import row_id, session_scope
from govern.store.tables import SecretRef, SecretVersion, ExternalCredential
from govern.config_as_code.units import parse_duration


def ref_external_id(credential: str, principal: str | None, field: str) -> str:
    return f"credential/{credential}/{principal or '-'}/{field}"


@dataclass(frozen=True)
class StoredSecret:
    ref_id: int
    path: str
    version: int
    value: Secret


class CredentialSecrets:
    def __init__(self, sessions, store: SecretStore | Callable[[], SecretStore | None] | None, clock: Clock):
        self.sessions = sessions
        self._store = store  # the store, or a callable returning it (wired later by the secrets package)
        self.clock = clock

    @property
    def store(self) -> SecretStore | None:
        if callable(self._store) and not hasattr(self._store, "put"):
            return self._store()
        return cast("SecretStore | None", self._store)

    def _ref(self, session, credential: str, principal: str | None, field: str) -> SecretRef | None:
        """Found by its columns, not its external id, so rows written under another path scheme are found too."""
        query = sa.select(SecretRef).where(
            col(SecretRef.owner_kind) == "credential", col(SecretRef.owner) == credential, col(SecretRef.field) == field,
            col(SecretRef.principal).is_(None) if principal is None else col(SecretRef.principal) == principal)
        return session.execute(query.order_by(col(SecretRef.set_at).desc().nulls_last(), col(SecretRef.id).desc())
                               .limit(1)).scalar_one_or_none()

    def candidates(self, credential: str, principal: str | None, field: str) -> list[StoredSecret]:
        """The versions to try, newest first: current, then previous (rotation overlap). Empty when none is set."""
        if self.store is None:
            raise ConfigurationError("no secret store is configured")
        with self.sessions() as session:
            ref = self._ref(session, credential, principal, field)
            if ref is None:
                return []
            staged = session.execute(sa.select(SecretVersion).where(
                col(SecretVersion.secret_ref_id) == ref.id,
                col(SecretVersion.stage).in_(("current", "previous")))).scalars().all()
            overlap = self._overlap(session, credential)
            set_at = _aware(ref.set_at) if ref.set_at else None
        now = self.clock.now()
        current = [v.version for v in staged if v.stage == "current"]
        # Only the newest previous version, and only while the credential's rotation overlap lasts: until the
        # expiry a rotation run gave it, or (a version replaced with `govern secrets put`) `overlap` after the
        # new one was set. Without an overlap the previous version is never tried: a wrong new secret must fail,
        # not be masked by the old one.
        previous = sorted((v for v in staged if v.stage == "previous"
                           and _within_overlap(v.expires_at, set_at, overlap, now)), key=lambda v: -v.version)[:1]
        versions = sorted(current, reverse=True)[:1] + [v.version for v in previous if v.version not in current]
        if not versions:
            versions = [ref.current_version or self.store.metadata(ref.path).version]
        return [StoredSecret(row_id(ref), ref.path, v, self.store.get(ref.path, version=v)) for v in versions]

    @staticmethod
    def _overlap(session, credential: str) -> float | None:
        rotation = session.execute(sa.select(col(ExternalCredential.rotation)).where(
            col(ExternalCredential.external_id) == credential)).scalar_one_or_none() or {}
        return parse_duration(rotation["overlap"]) if rotation.get("overlap") else None

    def current(self, credential: str, principal: str | None, field: str) -> StoredSecret | None:
        if field == "refresh_token":
            return self.latest(credential, principal, field)
        found = self.candidates(credential, principal, field)
        return found[0] if found else None

    def latest(self, credential: str, principal: str | None, field: str) -> StoredSecret | None:
        """The newest version in the store itself. For refresh tokens the vault is the truth: a rotated token
        written just before a crash (its SecretVersion row not yet recorded) must still be the one used."""
        if self.store is None:
            raise ConfigurationError("no secret store is configured")
        with self.sessions() as session:
            ref = self._ref(session, credential, principal, field)
            if ref is None:
                return None
            ref_id, path = row_id(ref), ref.path
        version = self.store.metadata(path).version
        return StoredSecret(ref_id, path, version, self.store.get(path, version=version))

    def replace(self, credential: str, principal: str | None, field: str, value: Secret, *,
                expected_version: int | None) -> int:
        """Store a new version with check-and-set against `expected_version` (0/None: must not exist yet),
        then stage it `current` and the one it replaces `previous`. Raises SecretConflict if it moved."""
        store = self.store
        if store is None:
            raise ConfigurationError("no secret store is configured")
        with self.sessions() as session:  # read, and close, before the store is called: no transaction is held
            ref = self._ref(session, credential, principal, field)  # open across it (the local store writes too)
            path = ref.path if ref is not None else ref_external_id(credential, principal, field)
        meta = store.put(path, value, cas=expected_version or 0)
        with session_scope(self.sessions) as session:
            ref = self._ref(session, credential, principal, field)
            if ref is None:
                ref = SecretRef(external_id=path, owner_kind="credential", owner=credential, principal=principal,
                                field=field, store=getattr(store, "kind", "local"), path=path)
                session.add(ref)
                session.flush()
            for old in session.execute(sa.select(SecretVersion).where(
                    col(SecretVersion.secret_ref_id) == ref.id, col(SecretVersion.stage).in_(("current", "previous")))).scalars():
                old.stage = "previous" if old.stage == "current" else "revoked"
            session.add(SecretVersion(secret_ref_id=row_id(ref), version=meta.version, stage="current"))
            ref.current_version = meta.version
            ref.set_at = self.clock.now()
            return meta.version


def _within_overlap(expires_at: dt.datetime | None, set_at: dt.datetime | None, overlap: float | None,
                    now: dt.datetime) -> bool:
    if expires_at is not None:
        return _aware(expires_at) > now
    return overlap is not None and set_at is not None and set_at + dt.timedelta(seconds=overlap) > now


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


__all__ = ["CredentialSecrets", "StoredSecret", "ref_external_id", "SecretConflict"]
