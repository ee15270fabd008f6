"""Paged reads of the landscape for the management API: a few bulk queries per page, no N+1.

Items have the spec shape of govern.config_as_code.specs plus read-only facts: a credential's secret
fields as metadata only ("set on DATE, version N"; never values), an integration user's client secret
status, a permission set's assignments.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from govern.store import landscape as L
from govern.store.tables import SecretRef

MAX_LIMIT = 500


def page(session: Session, kind: str, *, limit: int = 100, after: str | None = None,
         only: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` items ordered by external id, starting after `after`; and the cursor for the next page."""
    table = L.T[kind]
    query = sa.select(table).order_by(table.c.external_id)
    if only is not None:
        query = query.where(table.c.external_id == only)
    elif after is not None:
        query = query.where(table.c.external_id > after)
    rows = session.execute(query.limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = _BUILD[kind](session, rows) if rows else []
    return items, (rows[-1]["external_id"] if more else None)


def _names(session: Session, kind: str, ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    table = L.T[kind]
    return dict(session.execute(sa.select(table.c.id, table.c.external_id).where(table.c.id.in_(ids))).all())


def _systems(session, rows):
    return [{"id": r["external_id"], **L.system_spec_of(r)} for r in rows]


def _secret_metadata(session, owner_kind: str, owners: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    query = sa.select(col(SecretRef.owner), col(SecretRef.principal), col(SecretRef.field), col(SecretRef.set_at),
                      col(SecretRef.current_version), col(SecretRef.store), col(SecretRef.schedule),
                      col(SecretRef.next_due_at)) \
        .where(col(SecretRef.owner_kind) == owner_kind, col(SecretRef.owner).in_(owners)) \
        .order_by(col(SecretRef.owner), col(SecretRef.principal), col(SecretRef.field))
    for owner, principal, field, set_at, version, store, schedule, next_due in session.execute(query):
        status = (f"set on {set_at.date().isoformat()}, version {version}" if set_at is not None and version is not None
                  else "not set")
        out.setdefault(owner, []).append({
            "principal": principal, "field": field, "status": status, "set_at": set_at.isoformat() if set_at else None,
            "version": version, "store": store, "rotation_schedule": schedule,
            "next_rotation_due_at": next_due.isoformat() if next_due else None})
    return out


def _credentials(session, rows):
    ids = [r["id"] for r in rows]
    systems = _names(session, "system", (r["system_id"] for r in rows))
    principal_rows = session.execute(sa.select(L.PRINCIPAL).where(L.PRINCIPAL.c.credential_id.in_(ids))
                                     .order_by(L.PRINCIPAL.c.name)).mappings().all()
    users = _names(session, "integration_user", (p["integration_user_id"] for p in principal_rows))
    principals: dict[int, list[dict]] = {}
    for p in principal_rows:
        principals.setdefault(p["credential_id"], []).append(
            {**L.principal_of(p, users), "connected_at": p["connected_at"].isoformat() if p["connected_at"] else None,
             # The upstream refused its refresh token: no upstream call until it is reconnected (issue #16).
             "needs_reconnect": p["needs_reconnect_at"] is not None,
             "needs_reconnect_since": p["needs_reconnect_at"].isoformat() if p["needs_reconnect_at"] else None})
    secrets = _secret_metadata(session, "credential", [r["external_id"] for r in rows])
    return [{"id": r["external_id"], **L.credential_spec_of(r, systems, principals.get(r["id"], [])),
             "secrets": secrets.get(r["external_id"], [])} for r in rows]


def _named_credentials(session, rows):
    credentials = _names(session, "credential", (r["credential_id"] for r in rows))
    return [{"id": r["external_id"], **L.named_credential_spec_of(r, credentials)} for r in rows]


def _assignments_by(session, column, ids, other_kind: str, other_column) -> dict[int, list[dict]]:
    other = L.T[other_kind]
    query = sa.select(column, other.c.external_id, L.ASSIGNMENT.c.expires_at) \
        .join(other, other.c.id == other_column).where(column.in_(ids)).order_by(other.c.external_id)
    out: dict[int, list[dict]] = {}
    for owner_id, name, expires in session.execute(query):
        out.setdefault(owner_id, []).append({other_kind: name,
                                             "until": L._iso(expires)})
    return out


def _users(session, rows):
    ids = [r["id"] for r in rows]
    systems = _names(session, "system", (r["source_system_id"] for r in rows))
    assignments = _assignments_by(session, L.ASSIGNMENT.c.integration_user_id, ids, "permission_set",
                                  L.ASSIGNMENT.c.permission_set_id)
    return [{"id": r["external_id"], **L.user_spec_of(r, systems, assignments.get(r["id"], [])),
             "client_secret": {"set": r["client_secret_hash"] is not None,
                               "set_at": r["client_secret_set_at"].isoformat() if r["client_secret_set_at"] else None},
             "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None} for r in rows]


def _permission_sets(session, rows):
    ids = [r["id"] for r in rows]
    grant_rows = session.execute(sa.select(L.GRANT).where(L.GRANT.c.permission_set_id.in_(ids))
                                 .order_by(L.GRANT.c.permission_set_id, L.GRANT.c.position, L.GRANT.c.id)).mappings().all()
    ncs = _names(session, "named_credential", (g["named_credential_id"] for g in grant_rows))
    grants: dict[int, list[dict]] = {}
    for g in grant_rows:
        grants.setdefault(g["permission_set_id"], []).append(L.grant_of(g, ncs))
    assignments = _assignments_by(session, L.ASSIGNMENT.c.permission_set_id, ids, "integration_user",
                                  L.ASSIGNMENT.c.integration_user_id)
    return [{"id": r["external_id"], **L.permission_set_spec_of(r, grants.get(r["id"], [])), "source": r["source"],
             "assignments": assignments.get(r["id"], [])} for r in rows]


_BUILD = {"system": _systems, "credential": _credentials, "named_credential": _named_credentials,
          "integration_user": _users, "permission_set": _permission_sets}
