"""Console commands: each one calls the same service as the CLI and the API, then records an AdminAction.

- Integration users (create, edit, suspend, reactivate, assign and unassign permission sets) go through
  the configuration-as-code service: the console builds a governance.yaml fragment for that one user and
  calls `govern.landscape.apply_document`, so the console is validated exactly like `govern apply`.
- Secrets go through `govern.secrets.service.SecretService` (which records its own AdminAction, without
  the value).
- Rotations go through `govern.rotation.runner.RotationService`.

No Flask request parsing here; the views parse forms and map errors. Callers check roles first.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

from govern.admin import journal, rightsizing
from govern.domain.secret import Secret
from govern.errors import NotFound, Conflict
from govern.store.db import session_scope
from govern.config_as_code.specs import to_document
from govern.store.landscape import load_current
from govern.config_as_code.schema import API_VERSION
from govern.landscape import apply_document
from govern.secrets.service import secret_service
from govern.rotation.wiring import rotation_service
from govern.store.tables import SecretRef
from govern.store.audit_runs import add_suppression

USER_FIELDS = ("name", "owner", "justification", "review_date", "source_system", "ip_ranges", "scopes")


def _current_user_doc(sessions, user: str) -> dict[str, Any] | None:
    with sessions() as session:
        spec = load_current(session).specs["integration_user"].get(user)
    if spec is None:
        return None
    return to_document({"integration_user": {user: spec}})["integration_users"][0]


def _apply_user(services, actor: str, doc: dict[str, Any], action: str, before: dict[str, Any] | None):
    text = yaml.safe_dump({"apiVersion": API_VERSION, "kind": "Landscape", "integration_users": [doc]},
                          sort_keys=False)
    # Only the console's own Reactivate brings a retired user back; an edit keeps the stored status anyway.
    reactivate = (doc["id"],) if action == "integration_user.reactivate" else ()
    plan = apply_document(services.sessions, text, f"console:{action}", production=services.settings.production,
                          reactivate=reactivate)
    changes = [c for c in plan.changes if c.kind == "integration_user" and c.id == doc["id"]]
    if changes:
        change = changes[0]
        with session_scope(services.sessions) as s:
            if change.action == "create":
                journal.record(s, actor=actor, action=action, subject_kind="integration_user", subject=doc["id"],
                               before={}, after=doc, at=services.clock.now())
            else:
                journal.record(s, actor=actor, action=action, subject_kind="integration_user", subject=doc["id"],
                               before={k: v[0] for k, v in change.diff.items()},
                               after={k: v[1] for k, v in change.diff.items()}, at=services.clock.now())
    return plan


def save_integration_user(services, actor: str, user: str, fields: dict[str, Any], *, create: bool):
    """Create a user, or change the given fields of an existing one (status and assignments are kept)."""
    current = _current_user_doc(services.sessions, user)
    if create and current is not None:
        raise Conflict(f"integration user {user!r} exists already")
    if not create and current is None:
        raise NotFound(f"no integration user {user!r}")
    doc = dict(current or {"id": user})
    for key in USER_FIELDS:
        if key in fields:
            value = fields[key]
            if value in (None, "", []):
                doc.pop(key, None)
            else:
                doc[key] = value.isoformat() if isinstance(value, dt.date) else value
    return _apply_user(services, actor, doc, "integration_user.create" if create else "integration_user.update",
                       current)


def set_user_status(services, actor: str, user: str, status: str):
    doc = _current_user_doc(services.sessions, user)
    if doc is None:
        raise NotFound(f"no integration user {user!r}")
    if doc.get("status") == "retired" and status == "suspended":
        # A page opened before `govern offboard` still shows Suspend: retired already refuses everything, and
        # only Reactivate brings a retired user back (on purpose, never as a side effect).
        raise Conflict(f"{user} is retired (offboarded), which already refuses it every token and call; "
                       f"nothing was changed. Reactivate it to bring it back.")
    doc["status"] = status
    verb = {"suspended": "suspend", "active": "reactivate", "retired": "retire"}[status]
    return _apply_user(services, actor, doc, f"integration_user.{verb}", None)


def assign_permission_set(services, actor: str, user: str, permission_set: str, until: dt.date | None = None):
    doc = _current_user_doc(services.sessions, user)
    if doc is None:
        raise NotFound(f"no integration user {user!r}")
    kept = [a for a in doc.get("permission_sets", []) if _ps(a) != permission_set]
    kept.append({"permission_set": permission_set, "until": until.isoformat()} if until else permission_set)
    doc["permission_sets"] = kept
    return _apply_user(services, actor, doc, "assignment.add", None)


def unassign_permission_set(services, actor: str, user: str, permission_set: str):
    doc = _current_user_doc(services.sessions, user)
    if doc is None:
        raise NotFound(f"no integration user {user!r}")
    doc["permission_sets"] = [a for a in doc.get("permission_sets", []) if _ps(a) != permission_set]
    return _apply_user(services, actor, doc, "assignment.remove", None)


def _ps(item) -> str:
    return item["permission_set"] if isinstance(item, dict) else item


def set_secret(services, actor: str, *, owner_kind: str, owner: str, field: str, value: Secret,
               principal: str | None = None, correlation_id: str | None = None):
    """Write a secret through the secret service (it records the AdminAction: version, never the value)."""
    service = secret_service(services)
    if owner_kind == "integration_user":
        return service.put_for_user(owner, field, value, actor=actor, correlation_id=correlation_id)
    return service.put_for_credential(owner, field, value, principal=principal or None, actor=actor,
                                      correlation_id=correlation_id)


def _rotation(services):
    return rotation_service(services)


def rotate_now(services, actor: str, ref_id: int) -> tuple[int | None, str]:
    """Start a rotation run for one secret now (a worker executes it). Returns (run id, why not)."""
    run_id, why = _rotation(services).start(ref_id, force=True)
    with session_scope(services.sessions) as s:
        ref = s.get(SecretRef, ref_id)
        journal.record(s, actor=actor, action="rotation.start", subject_kind="secret_ref",
                       subject=ref.external_id if ref else str(ref_id), before={},
                       after={"run_id": run_id, "started": run_id is not None, "reason": why},
                       at=services.clock.now())
    return run_id, why


def retry_rotation(services, actor: str, run_id: int):
    outcome = _rotation(services).retry(run_id, by=actor)
    with session_scope(services.sessions) as s:
        journal.record(s, actor=actor, action="rotation.retry", subject_kind="rotation_run", subject=str(run_id),
                       before={"state": "parked"}, after={"status": outcome.status}, at=services.clock.now())
    return outcome


def acknowledge_rotation(services, actor: str, run_id: int) -> None:
    _rotation(services).acknowledge(run_id, by=actor)
    with session_scope(services.sessions) as s:
        journal.record(s, actor=actor, action="rotation.acknowledge", subject_kind="rotation_run",
                       subject=str(run_id), before={}, after={"acknowledged_by": actor}, at=services.clock.now())


def apply_rightsizing(services, actor: str, user: str):
    """Apply the right-sizing recommendation of one user, recomputed here from the decision log (never taken
    from the form), through `apply_document` as `govern apply` applies a file; recorded as an AdminAction."""
    with services.sessions() as session:
        sizing = rightsizing.for_user(session, services, user)
    if sizing.recommendation is None:
        raise NotFound(f"no integration user {user!r}")
    doc = sizing.document()
    if not doc.get("integration_users"):
        rec = sizing.recommendation
        why = rec.reason if not rec.judged else "nothing is unused" if not rec.unused else \
            "replaying the window's requests would deny some" if rec.proof.get("would_deny") else "nothing to apply"
        raise Conflict(f"no recommendation to apply for {user}: {why}")
    before = _current_user_doc(services.sessions, user) or {}
    text = yaml.safe_dump(doc, sort_keys=False)
    plan = apply_document(services.sessions, text, "console:rightsizing.apply", production=services.settings.production)
    after = doc["integration_users"][0]
    with session_scope(services.sessions) as s:
        journal.record(s, actor=actor, action="rightsizing.apply", subject_kind="integration_user", subject=user,
                       before={"permission_sets": before.get("permission_sets", []), "scopes": before.get("scopes", [])},
                       after={"permission_sets": after["permission_sets"], "scopes": after["scopes"],
                              "replayed_requests": sizing.recommendation.proof.get("replayed_requests", 0),
                              "would_deny": sizing.recommendation.proof.get("would_deny", 0)},
                       at=services.clock.now())
    return plan


def suppress_finding(services, actor: str, *, rule_id: str, subject: str, owner: str, justification: str,
                     ticket: str, until: dt.date):
    """Accept the risk of one finding until a date, through the audit store's validated `add_suppression`."""
    with session_scope(services.sessions) as s:
        row = add_suppression(s, rule_id, subject, owner, justification, ticket, until,
                              services.clock.now().date(), created_by=actor)
        journal.record(s, actor=actor, action="suppression.add", subject_kind="finding", subject=f"{rule_id} {subject}",
                       before={}, after={"suppression": row.external_id, "owner": owner, "ticket": ticket,
                                         "until": until.isoformat()}, at=services.clock.now())
        return row.external_id
