"""Move every secret from the local store to Vault: write, read back and compare, then delete locally.

Each secret (the latest live version of every path) is one item that succeeds or fails alone. The run
can resume after any failure: an item whose value is already in Vault (compared, not assumed) is not
written again, only deleted locally; items deleted locally are done. SecretRef rows are moved to the
vault store with the version Vault reports.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import select

from govern.errors import GovernError, SecretNotFound
from govern.store.db import row_id, session_scope
from govern.store.tables import SecretRef, utcnow
from govern.secrets.service import SecretService

log = logging.getLogger("govern.secrets.migrate")


@dataclass(frozen=True)
class ItemResult:
    path: str
    outcome: str  # moved | verified (was in vault already) | failed
    detail: str = ""


def migrate_local_to_vault(local, vault, sessions) -> list[ItemResult]:
    results = []
    for path, version in list(local.iter_latest()):
        try:
            results.append(_move_one(local, vault, sessions, path, version))
        except GovernError as exc:
            log.warning("secret migration item failed", extra={"ref": path, "code": exc.code})
            results.append(ItemResult(path, "failed", exc.detail))
    return results


def _move_one(local, vault, sessions, path: str, version: int) -> ItemResult:
    value = local.get(path, version=version)
    try:
        existing = vault.get(path)
    except SecretNotFound:
        existing = None
    if existing is not None and existing == value:
        outcome, meta = "verified", vault.metadata(path)
    else:
        cas = vault.metadata(path).version if existing is not None else 0
        written = vault.put(path, value, cas=cas)
        if vault.get(path, version=written.version) != value:
            raise GovernError(f"{path}: the value read back from the vault differs from the one written; "
                              "kept locally")
        outcome, meta = "moved", vault.metadata(path)
    _point_ref_at_vault(sessions, path, meta, getattr(vault, "mount", None))
    local.delete(path)  # only after the vault copy is verified
    return ItemResult(path, outcome, f"vault version {meta.version}")


def _point_ref_at_vault(sessions, path: str, meta, mount: str | None) -> None:
    with session_scope(sessions) as s:
        ref = s.scalars(select(SecretRef).where(SecretRef.external_id == path)).first()
        if ref is None:  # a secret put directly into the store (not through govern): nothing to re-point
            return
        ref.store, ref.mount, ref.current_version, ref.set_at = "vault", mount, meta.version, ref.set_at or utcnow()
        s.add(ref)
        s.flush()
        SecretService._record_versions(s, row_id(ref), meta)
