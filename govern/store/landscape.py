"""The landscape in the database: read it as specs, and apply a plan in bulk.

`load_current` reads every entity with one query per table (no N+1) into the same spec shape that
governance.yaml produces (govern.config_as_code.specs). `apply_plan` writes a plan inside the caller's
transaction: upsert by external id, child rows (principals, grants, assignments) replaced only for
entities whose children changed, and pruned entities deleted in dependency order. It never reads or
writes secret references or values. (A plan that would remove the owner of a stored secret never gets
here: `govern.landscape.secrets_left_behind` refuses it while validating.)
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govern.config_as_code.plan import Change, Plan
from govern.config_as_code.specs import Landscape, empty_landscape
from govern.store.db import table_of
from govern.store.tables import (Assignment, ExternalCredential, IntegrationUser, NamedCredential, PermissionGrant,
                                 PermissionSet, Principal, System, utcnow)

T = {"system": table_of(System), "credential": table_of(ExternalCredential),
     "named_credential": table_of(NamedCredential), "integration_user": table_of(IntegrationUser),
     "permission_set": table_of(PermissionSet)}
PRINCIPAL, GRANT, ASSIGNMENT = table_of(Principal), table_of(PermissionGrant), table_of(Assignment)


@dataclass
class Stored:
    """The current landscape plus the internal ids needed to write changes."""

    specs: Landscape
    ids: dict[str, dict[str, int]]  # kind -> external id -> row id
    principal_ids: dict[tuple[str, str], int] = field(default_factory=dict)  # (credential, name) -> row id
    assignment_ids: dict[tuple[str, str], int] = field(default_factory=dict)  # (user, permission set) -> row id
    # Entities that another source owns (permission sets imported from Salesforce): never pruned.
    foreign: set[tuple[str, str]] = field(default_factory=set)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def load_current(session: Session) -> Stored:
    """The whole landscape: one query per table."""
    specs = empty_landscape()
    stored = Stored(specs=specs, ids={kind: {} for kind in T})
    name_of: dict[str, dict[int, str]] = {kind: {} for kind in T}
    rows = {kind: session.execute(sa.select(table).order_by(table.c.id)).mappings().all() for kind, table in T.items()}
    for kind, items in rows.items():
        for r in items:
            stored.ids[kind][r["external_id"]] = r["id"]
            name_of[kind][r["id"]] = r["external_id"]
    principals: dict[int, list[dict]] = {}
    for r in session.execute(sa.select(PRINCIPAL).order_by(PRINCIPAL.c.name)).mappings().all():
        principals.setdefault(r["credential_id"], []).append(principal_of(r, name_of["integration_user"]))
        stored.principal_ids[(name_of["credential"][r["credential_id"]], r["name"])] = r["id"]
    assignments: dict[int, list[dict]] = {}
    for r in session.execute(sa.select(ASSIGNMENT)).mappings().all():
        user, pset = name_of["integration_user"][r["integration_user_id"]], name_of["permission_set"][r["permission_set_id"]]
        assignments.setdefault(r["integration_user_id"], []).append({"permission_set": pset, "until": _iso(r["expires_at"])})
        stored.assignment_ids[(user, pset)] = r["id"]
    grants: dict[int, list[dict]] = {}
    for r in session.execute(sa.select(GRANT).order_by(GRANT.c.permission_set_id, GRANT.c.position, GRANT.c.id)).mappings().all():
        grants.setdefault(r["permission_set_id"], []).append(grant_of(r, name_of["named_credential"]))
    for r in rows["system"]:
        specs["system"][r["external_id"]] = system_spec_of(r)
    for r in rows["credential"]:
        specs["credential"][r["external_id"]] = credential_spec_of(r, name_of["system"], principals.get(r["id"], []))
    for r in rows["named_credential"]:
        specs["named_credential"][r["external_id"]] = named_credential_spec_of(r, name_of["credential"])
    for r in rows["integration_user"]:
        specs["integration_user"][r["external_id"]] = user_spec_of(r, name_of["system"], assignments.get(r["id"], []))
    for r in rows["permission_set"]:
        specs["permission_set"][r["external_id"]] = permission_set_spec_of(r, grants.get(r["id"], []))
        if r["source"] != "govern":
            stored.foreign.add(("permission_set", r["external_id"]))
    return stored


# --- rows -> specs (also used by the management API's paged reads) ---------------------------------

def system_spec_of(r) -> dict:
    contract = r["contract"] or {}
    return {
        "name": r["name"] or r["external_id"], "kind": r["kind"], "description": r["description"] or "",
        "scopes": list(r["scopes"] or []), "owner": r["owner"], "escalation": r["escalation_contact"],
        "sla": r["sla"] or {}, "rate_limit_per_minute": r["rate_limit_per_minute"],
        "daily_api_budget": r["daily_api_budget"], "api_version_policy": r["api_version_policy"],
        "max_concurrent_calls": contract.get("max_concurrent_calls"),
        "maintenance_windows": list(r["maintenance_windows"] or []), "runbook": r["runbook_url"],
        "schema_links": list(contract.get("schema_links", [])), "error_codes": dict(contract.get("error_codes", {})),
    }


def principal_of(r, user_names: dict[int, str]) -> dict:
    return {"name": r["name"], "subject": r["subject"],
            "user": user_names.get(r["integration_user_id"]) if r["integration_user_id"] else None}


def credential_spec_of(r, system_names: dict[int, str], principals: list[dict]) -> dict:
    return {
        "system": system_names[r["system_id"]], "protocol": r["protocol"], "token_url": r["token_url"],
        "authorize_url": r["authorize_url"], "client_id": r["client_id"], "client_auth": r["client_auth_method"],
        "scopes": list(r["scopes"] or []), "audience": r["audience"], "resource": list(r["resource"] or []),
        "token_params": dict(r["token_params"] or {}), "leeway": r["leeway_seconds"], "header": r["header_name"],
        "principal_type": r["principal_type"], "principals": principals,
        "refresh_token_policy": r["refresh_token_policy"], "rotation": r["rotation"] or {},
        "expiry": r["expiry"] or {},
        "revocation_endpoint": r["revocation_url"], "revocation_client_auth": r["revocation_auth_method"],
    }


def named_credential_spec_of(r, credential_names: dict[int, str]) -> dict:
    return {
        "credential": credential_names[r["credential_id"]], "url": r["url"], "api_version": r["api_version"],
        "api_type": r["api_type"], "timeout": float(r["timeout_seconds"]), "retry": r["retry"] or {},
        "circuit_breaker": r["circuit_breaker"] or {}, "methods": list(r["allowed_methods"] or []),
        "paths": list(r["allowed_paths"] or []), "during_maintenance": r["during_maintenance"],
        "max_body": r["max_body_bytes"],
    }


def user_spec_of(r, system_names: dict[int, str], assignments: list[dict]) -> dict:
    return {
        "name": r["name"] or r["external_id"], "owner": r["owner"], "justification": r["justification"],
        "status": r["status"], "review_date": _iso(r["review_date"]),
        "source_system": system_names.get(r["source_system_id"]) if r["source_system_id"] else None,
        "auth": r["client_auth_method"], "jwks": r["jwks"] or {}, "ip_ranges": list(r["allowed_cidrs"] or []),
        "scopes": list(r["allowed_scopes"] or []),
        "permission_sets": sorted(assignments, key=lambda a: a["permission_set"]),
        "rotation": r["rotation"] or {},
        "trust": r["trust"].model_dump(mode="json", exclude_none=True) if r["trust"] is not None else {},
    }


def grant_of(r, named_credential_names: dict[int, str]) -> dict:
    return {"named_credential": named_credential_names.get(r["named_credential_id"]) if r["named_credential_id"] else None,
            "principal": r["principal"], "methods": list(r["methods"] or []), "paths": list(r["paths"] or []),
            "objects": r["objects"] or {}}


def permission_set_spec_of(r, grants: list[dict]) -> dict:
    return {
        "description": r["description"] or "", "scopes": list(r["scopes"] or []),
        "api_types": list(r["api_types"] or []), "max_token_lifetime": r["max_token_lifetime_seconds"],
        "overdraft": bool(r["allow_budget_overdraft"]), "system_permissions": list(r["system_permissions"] or []),
        "grants": grants, "conditions": r["conditions"] or {},
    }


# --- spec -> columns ------------------------------------------------------------------------------

def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _columns(kind: str, spec: dict, ids: dict[str, dict[str, int]]) -> dict[str, Any]:
    if kind == "system":
        return {"name": spec["name"], "kind": spec["kind"], "description": spec["description"], "owner": spec["owner"],
                "escalation_contact": spec["escalation"], "sla": spec["sla"],
                "rate_limit_per_minute": spec["rate_limit_per_minute"], "daily_api_budget": spec["daily_api_budget"],
                "api_version_policy": spec["api_version_policy"], "maintenance_windows": spec["maintenance_windows"],
                "runbook_url": spec["runbook"], "scopes": spec["scopes"],
                "contract": {k: spec[k] for k in ("schema_links", "error_codes", "max_concurrent_calls") if spec.get(k)}}
    if kind == "credential":
        return {"system_id": ids["system"][spec["system"]], "protocol": spec["protocol"], "token_url": spec["token_url"],
                "authorize_url": spec["authorize_url"], "client_id": spec["client_id"],
                "client_auth_method": spec["client_auth"], "scopes": spec["scopes"], "audience": spec["audience"],
                "resource": spec["resource"], "token_params": spec["token_params"], "leeway_seconds": spec["leeway"],
                "header_name": spec["header"], "principal_type": spec["principal_type"],
                "refresh_token_policy": spec["refresh_token_policy"], "rotation": spec["rotation"],
                "expiry": spec.get("expiry") or {},
                "revocation_url": spec.get("revocation_endpoint"),
                "revocation_auth_method": spec.get("revocation_client_auth")}
    if kind == "named_credential":
        return {"credential_id": ids["credential"][spec["credential"]], "url": spec["url"],
                "api_version": spec["api_version"], "api_type": spec["api_type"], "timeout_seconds": spec["timeout"],
                "retry": spec["retry"], "circuit_breaker": spec["circuit_breaker"], "allowed_methods": spec["methods"],
                "allowed_paths": spec["paths"], "during_maintenance": spec["during_maintenance"],
                "max_body_bytes": spec["max_body"]}
    if kind == "integration_user":
        return {"name": spec["name"], "owner": spec["owner"], "justification": spec["justification"],
                "status": spec["status"], "review_date": _date(spec["review_date"]),
                "source_system_id": ids["system"][spec["source_system"]] if spec["source_system"] else None,
                "client_auth_method": spec["auth"], "jwks": spec["jwks"], "allowed_cidrs": spec["ip_ranges"],
                "allowed_scopes": spec["scopes"], "rotation": spec["rotation"],
                "trust": spec.get("trust") or None}
    if kind == "permission_set":
        return {"description": spec["description"], "scopes": spec["scopes"], "api_types": spec["api_types"],
                "max_token_lifetime_seconds": spec["max_token_lifetime"], "allow_budget_overdraft": spec["overdraft"],
                "system_permissions": spec["system_permissions"], "conditions": spec.get("conditions") or None}
    raise ValueError(kind)


# Children handled apart from the entity's own row.
CHILD_FIELDS = {"credential": "principals", "integration_user": "permission_sets", "permission_set": "grants"}
# Write order: what an entity references is written before it.
WRITE_ORDER = ("system", "integration_user", "credential", "named_credential", "permission_set")
WRITE_STEPS = len(WRITE_ORDER) + 3  # each kind, grants, assignments, deletes
DELETE_ORDER = ("permission_set", "named_credential", "credential", "integration_user", "system")


def apply_plan(session: Session, plan: Plan, stored: Stored, progress=None) -> None:
    """Write `plan` in the caller's transaction; `progress(step)` after each of the WRITE_STEPS steps."""
    progress = progress or (lambda step: None)
    deletes = {kind: [c.id for c in plan.of("delete", kind)] for kind in T}
    ids = stored.ids
    now = utcnow()
    for kind in WRITE_ORDER:
        table = T[kind]
        creates = plan.of("create", kind)
        # Every updated entity gets a new updated_at, also when only its children (grants, assignments,
        # principals) changed: the broker's snapshot version reads updated_at, and on SQLite rewritten child
        # rows can reuse the same ids, so count and max(id) alone would not show the change.
        updates = plan.of("update", kind)
        if creates:
            session.execute(sa.insert(table), [{"external_id": c.id, "created_at": now, "updated_at": now,
                                                **_columns(kind, _spec(c), ids)} for c in creates])
            ids[kind] = dict(session.execute(sa.select(table.c.external_id, table.c.id)).all())
        if updates:
            session.execute(sa.update(table).where(table.c.id == sa.bindparam("_id")),
                            [{"_id": ids[kind][c.id], "updated_at": now, **_columns(kind, _spec(c), ids)} for c in updates])
        if kind == "credential":
            _write_principals(session, plan, stored, now)
        progress(f"wrote {kind}s")
    _write_grants(session, plan, ids)
    progress("wrote grants")
    _write_assignments(session, plan, stored, now)
    progress("wrote assignments")
    _delete(session, deletes, ids)
    progress("deleted")


def record_locations(session: Session, locations: dict[str, dict[str, tuple[str, int]]]) -> None:
    """Remember the file and line each entity was applied from (findings on it point there in SARIF). Only rows
    whose location moved are written; `updated_at` stays, as the landscape itself did not change."""
    for kind, where in locations.items():
        table = T[kind]
        if not where:
            continue
        rows = session.execute(sa.select(table.c.external_id, table.c.id, table.c.source_file, table.c.source_line))
        moved = [{"_id": row_id, "source_file": where[ext][0][:1000], "source_line": where[ext][1]}
                 for ext, row_id, file, line in rows if ext in where and (file, line) != where[ext]]
        if moved:
            session.execute(sa.update(table).where(table.c.id == sa.bindparam("_id")), moved)


def _spec(change: Change) -> dict[str, Any]:
    """The desired spec of a create or an update (a delete carries none)."""
    if change.spec is None:
        raise ValueError(f"{change.action} of {change.kind} {change.id} carries no spec")
    return change.spec


def _changed_children(plan: Plan, kind: str) -> list[Change]:
    child = CHILD_FIELDS[kind]
    return [c for c in plan.changes if c.kind == kind and
            (c.action == "create" and _spec(c)[child] or c.action == "update" and child in c.diff)]


def _write_principals(session: Session, plan: Plan, stored: Stored, now) -> None:
    """Upsert by (credential, name), so that a principal keeps its row (and `connected_at`) across applies."""
    ids = stored.ids
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[int] = []
    for change in _changed_children(plan, "credential"):
        cred_id = ids["credential"][change.id]
        spec = _spec(change)
        wanted = {p["name"]: p for p in spec["principals"]}
        for (cred, name), stale in stored.principal_ids.items():
            if cred == change.id and name not in wanted:
                deletes.append(stale)
        for name, p in wanted.items():
            values = {"kind": spec["principal_type"], "subject": p["subject"],
                      "integration_user_id": ids["integration_user"][p["user"]] if p["user"] else None}
            row_id = stored.principal_ids.get((change.id, name))
            if row_id is None:
                inserts.append({"credential_id": cred_id, "name": name, "created_at": now, **values})
            else:
                updates.append({"_id": row_id, **values})
    if deletes:
        session.execute(sa.delete(PRINCIPAL).where(PRINCIPAL.c.id.in_(deletes)))
    if updates:
        session.execute(sa.update(PRINCIPAL).where(PRINCIPAL.c.id == sa.bindparam("_id")), updates)
    if inserts:
        session.execute(sa.insert(PRINCIPAL), inserts)


def _write_grants(session: Session, plan: Plan, ids) -> None:
    """Grants have no identity of their own: a changed permission set gets its list rewritten."""
    changed = _changed_children(plan, "permission_set")
    existing = [ids["permission_set"][c.id] for c in changed if c.action == "update"]
    for chunk in _chunks(existing):
        session.execute(sa.delete(GRANT).where(GRANT.c.permission_set_id.in_(chunk)))
    rows = [{"permission_set_id": ids["permission_set"][c.id], "position": i,
             "named_credential_id": ids["named_credential"][g["named_credential"]], "principal": g["principal"],
             "methods": g["methods"], "paths": g["paths"], "objects": g["objects"]}
            for c in changed for i, g in enumerate(_spec(c)["grants"])]
    if rows:
        session.execute(sa.insert(GRANT), rows)


def _write_assignments(session: Session, plan: Plan, stored: Stored, now) -> None:
    ids = stored.ids
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[int] = []
    for change in _changed_children(plan, "integration_user"):
        wanted = {a["permission_set"]: a for a in _spec(change)["permission_sets"]}
        for (user, pset), stale in stored.assignment_ids.items():
            if user == change.id and pset not in wanted:
                deletes.append(stale)
        for pset, a in wanted.items():
            row_id = stored.assignment_ids.get((change.id, pset))
            if row_id is None:
                inserts.append({"integration_user_id": ids["integration_user"][change.id],
                                "permission_set_id": ids["permission_set"][pset], "expires_at": _date(a["until"]),
                                "created_at": now})
            else:
                updates.append({"_id": row_id, "expires_at": _date(a["until"])})
    for chunk in _chunks(deletes):
        session.execute(sa.delete(ASSIGNMENT).where(ASSIGNMENT.c.id.in_(chunk)))
    if updates:
        session.execute(sa.update(ASSIGNMENT).where(ASSIGNMENT.c.id == sa.bindparam("_id")), updates)
    if inserts:
        session.execute(sa.insert(ASSIGNMENT), inserts)


def _delete(session: Session, deletes: dict[str, list[str]], ids) -> None:
    for kind in DELETE_ORDER:
        row_ids = [ids[kind][x] for x in deletes[kind]]
        for chunk in _chunks(row_ids):
            if kind == "permission_set":
                session.execute(sa.delete(GRANT).where(GRANT.c.permission_set_id.in_(chunk)))
                session.execute(sa.delete(ASSIGNMENT).where(ASSIGNMENT.c.permission_set_id.in_(chunk)))
            if kind == "named_credential":
                session.execute(sa.delete(GRANT).where(GRANT.c.named_credential_id.in_(chunk)))
            if kind == "credential":
                session.execute(sa.delete(PRINCIPAL).where(PRINCIPAL.c.credential_id.in_(chunk)))
            if kind == "integration_user":
                session.execute(sa.delete(ASSIGNMENT).where(ASSIGNMENT.c.integration_user_id.in_(chunk)))
                session.execute(sa.delete(PRINCIPAL).where(PRINCIPAL.c.integration_user_id.in_(chunk)))
            session.execute(sa.delete(T[kind]).where(T[kind].c.id.in_(chunk)))


def _chunks(values: list, size: int = 500):
    for i in range(0, len(values), size):
        yield values[i:i + size]
