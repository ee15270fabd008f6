"""Secret material of external credentials, addressed through SecretRef rows and read from the secret store.

SecretRef rows are found by their columns (owner_kind "credential", owner, principal, field). A row this
module creates is named as `govern secrets put` names it (govern.domain.secret.secret_ref_name), so the two
never make two references for one secret; rows named `credential/<credential>/<principal or "-">/<field>` by
earlier versions are still found by their columns. Fields: client_secret,
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

from govern.domain.secret import Secret, secret_ref_name
from govern.errors import ConfigurationError, SecretConflict
from govern.ports import Clock, CredentialSecretRefs, SecretStore
from govern.config_as_code.units import parse_duration


@dataclass(frozen=True)
class StoredSecret:
    ref_id: int
    path: str
    version: int
    value: Secret


class CredentialSecrets:
    def __init__(self, refs: CredentialSecretRefs, store: SecretStore | Callable[[], SecretStore | None] | None,
                 clock: Clock):
        self.refs = refs  # the SecretRef rows (govern.store.credential_secret_refs)
        self._store = store  # the store, or a callable returning it (wired later by the secrets package)
        self.clock = clock

    @property
    def store(self) -> SecretStore | None:
        if callable(self._store) and not hasattr(self._store, "put"):
            return self._store()
        return cast("SecretStore | None", self._store)

    def candidates(self, credential: str, principal: str | None, field: str) -> list[StoredSecret]:
        """The versions to try, newest first: current, then previous (rotation overlap). Empty when none is set."""
        if self.store is None:
            raise ConfigurationError("no secret store is configured")
        ref = self.refs.find(credential, principal, field, with_versions=True)
        if ref is None:
            return []
        overlap = parse_duration(ref.overlap) if ref.overlap else None
        now = self.clock.now()
        current = [v.version for v in ref.staged if v.stage == "current"]
        # Only the newest previous version, and only while the credential's rotation overlap lasts: until the
        # expiry a rotation run gave it, or (a version replaced with `govern secrets put`) `overlap` after the
        # new one was set. Without an overlap the previous version is never tried: a wrong new secret must fail,
        # not be masked by the old one.
        previous = sorted((v for v in ref.staged if v.stage == "previous"
                           and _within_overlap(v.expires_at, ref.set_at, overlap, now)), key=lambda v: -v.version)[:1]
        versions = sorted(current, reverse=True)[:1] + [v.version for v in previous if v.version not in current]
        if not versions:
            versions = [ref.current_version or self.store.metadata(ref.path).version]
        return [StoredSecret(ref.id, ref.path, v, self.store.get(ref.path, version=v)) for v in versions]

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
        ref = self.refs.find(credential, principal, field)
        if ref is None:
            return None
        version = self.store.metadata(ref.path).version
        return StoredSecret(ref.id, ref.path, version, self.store.get(ref.path, version=version))

    def replace(self, credential: str, principal: str | None, field: str, value: Secret, *,
                expected_version: int | None) -> int:
        """Store a new version with check-and-set against `expected_version` (0/None: must not exist yet),
        then stage it `current` and the one it replaces `previous`. Raises SecretConflict if it moved."""
        store = self.store
        if store is None:
            raise ConfigurationError("no secret store is configured")
        # Read before the store is called: no transaction is held open across it (the local store writes too).
        ref = self.refs.find(credential, principal, field)
        path = ref.path if ref is not None else secret_ref_name("credential", credential, principal, field)
        meta = store.put(path, value, cas=expected_version or 0)
        self.refs.record_version(credential, principal, field, path=path, store=getattr(store, "kind", "local"),
                                 version=meta.version, now=self.clock.now())
        return meta.version


def _within_overlap(expires_at: dt.datetime | None, set_at: dt.datetime | None, overlap: float | None,
                    now: dt.datetime) -> bool:
    if expires_at is not None:
        return _aware(expires_at) > now
    return overlap is not None and set_at is not None and set_at + dt.timedelta(seconds=overlap) > now


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


__all__ = ["CredentialSecrets", "StoredSecret", "SecretConflict"]
