"""The configuration-as-code service: apply a governance.yaml document, export the landscape.

Used by the CLI (`govern apply`, `govern export`), the management API (`POST /api/v1/apply`) and the
console. The whole document is validated before anything is written (seed practices 8-9: upsert by
external id, idempotent); the plan is applied in one transaction.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import sqlalchemy as sa
import yaml
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from govern.config_as_code.plan import Plan, make_plan
from govern.config_as_code.specs import SECTION_OF, to_document
from govern.config_as_code.validate import check, parse
from govern.errors import Conflict, ValidationFailed
from govern.rotation.sync import sync_refs
from govern.store.rotation_refs import SqlRotationSettingsRows
from govern.store.db import session_scope
from govern.store.landscape import WRITE_STEPS, apply_plan, load_current, record_locations
from govern.store.revocation_queue import enqueue_for_plan, forgotten_refs, plan_requests
from govern.store.tables import AdminAction, SecretRef, utcnow

EXPORT_HEADER = "# governance.yaml written by `govern export`: no secret values; set them with `govern secrets put`.\n"


def apply_steps(dry_run: bool) -> int:
    """How many steps apply_document reports to its `progress` callback (a progress bar's length)."""
    return 3 if dry_run else 4 + WRITE_STEPS


def apply_document(sessions, text: str, filename: str = "<input>", *, dry_run: bool = False,
                   prune: bool = False, actor: str | None = None, correlation_id: str | None = None,
                   production: bool = False, progress: Callable[[str], None] | None = None,
                   reactivate: Collection[str] = ()) -> Plan:
    """Validate `text`, plan against the database, and (unless dry_run) apply in one transaction.

    `production` refuses plain-http upstream URLs; otherwise they come back as `plan.warnings`.

    Raises ValidationFailed with every error (each with `file:line:col` and a path) and writes nothing.
    With `actor`, an applied plan is recorded as an AdminAction in the same transaction. `progress` is
    called once per step done, with the step's name (apply_steps(dry_run) times when nothing fails).

    A retired integration user (`govern offboard`, or `status: retired` applied before) is not brought back by
    a file that still says `active` or `suspended`: the apply fails (ValidationFailed, nothing written) unless the
    user is named in `reactivate` (`govern apply --reactivate USER`, `?reactivate=USER`).
    """
    progress = progress or (lambda step: None)
    parsed = parse(text, filename)  # YAML syntax errors raise here, before touching the database
    progress("parsed")
    with session_scope(sessions) as session:
        stored = load_current(session)
        desired = check(parsed, stored.specs, prune=prune, production=production)
        progress("validated")
        for kind, items in stored.specs.items():
            for ext_id, spec in items.items():
                # Entities the file does not mention stay as they are (a landscape may span several files),
                # and even --prune leaves alone what another source owns (e.g. `govern import salesforce`).
                if not prune or (kind, ext_id) in stored.foreign:
                    desired[kind].setdefault(ext_id, spec)
        plan = make_plan(desired, stored.specs, prune=prune)
        plan.dry_run = dry_run
        plan.warnings = list(parsed.warnings)
        progress("planned")
        unconfirmed = reactivations_unconfirmed(plan, parsed, filename, reactivate)
        if unconfirmed:
            raise ValidationFailed(unconfirmed)
        # Retired or removed users' principals (and principals dropped from a credential): their upstream tokens
        # are revoked by the worker, queued in this transaction (govern.store.revocation_queue).
        revocations = plan_requests(session, plan)
        plan.revocations = [f"{r.describe()}: {r.reason}" for r in revocations]
        left_behind = secrets_left_behind(session, plan, filename, forgotten=forgotten_refs(revocations))
        if left_behind:
            raise ValidationFailed(left_behind)
        if not dry_run and plan.has_changes:
            try:
                enqueue_for_plan(session, revocations, utcnow())
                apply_plan(session, plan, stored, progress=progress)
                session.flush()
                # Stored secrets follow their credential's rotation config (govern.rotation.sync).
                sync_refs(SqlRotationSettingsRows(session), utcnow(),
                          credentials=[c.id for c in plan.changes if c.kind == "credential"],
                          users=[c.id for c in plan.changes if c.kind == "integration_user"])
            except IntegrityError:
                # Another apply (or a console edit) changed the same rows since we read them.
                raise Conflict("the landscape changed while this apply ran; nothing was written, run it again") from None
            plan.applied = True
            if actor:
                session.add(AdminAction(actor=actor, action="apply", subject_kind="landscape", subject=filename[:300],
                                        after={"counts": plan.counts, "prune": prune,
                                               "changes": [c.line() for c in plan.changes[:500]]},
                                        correlation_id=correlation_id))
            progress("recorded")
        elif dry_run:
            session.rollback()
        if not dry_run and filename not in NOT_FILES:
            record_locations(session, entity_lines(parsed))
    return plan


# Names apply_document is given for text that came from no file (stdin, the HTTP API): no location to record.
NOT_FILES = ("<input>", "<stdin>", "request")


def entity_lines(parsed) -> dict[str, dict[str, tuple[str, int]]]:
    """kind -> external id -> (file, line of its list item) for every valid entity of the document."""
    file = parsed.doc.filename
    try:  # inside the working directory (a repository checkout): relative to it, as SARIF's %SRCROOT% expects
        file = Path(file).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        file = str(Path(file).resolve())
    out: dict[str, dict[str, tuple[str, int]]] = {}
    for kind, items in parsed.entities.items():
        out[kind] = {ext_id: (file, parsed.doc.where((SECTION_OF[kind], index))[0])
                     for ext_id, (index, model) in items.items() if model is not None}
    return out


def reactivations_unconfirmed(plan: Plan, parsed, filename: str, confirmed: Collection[str]) -> list[dict]:
    """A validation error for every retired integration user the plan would make active or suspended again
    without the caller naming it: offboarding must not be undone by re-applying an old file."""
    errors = []
    for change in plan.of("update", "integration_user"):
        before, after = change.diff.get("status", (None, None))
        if before != "retired" or after == "retired" or change.id in confirmed:
            continue
        index = (parsed.entities.get("integration_user") or {}).get(change.id, (None, None))[0]
        location = filename
        if index is not None:
            location = f"{filename}:{parsed.doc.where((SECTION_OF['integration_user'], index))[0]}"
        errors.append({"location": location, "path": f"integration_users.{change.id}.status",
                       "message": f"integration user {change.id} is retired (offboarded); this would make it "
                                  f"{after} again. Say `status: retired` (or remove it with --prune), or confirm "
                                  f"with --reactivate {change.id}"})
    return errors


def secrets_left_behind(session, plan: Plan, filename: str, *, forgotten: set[str] | frozenset[str] = frozenset()
                        ) -> list[dict]:
    """Validation errors for every stored secret whose owner the plan removes (a pruned integration user or
    credential, or a principal dropped from a credential): a secret must never outlive what it belongs to
    unseen. The user deletes it first (`govern secrets delete REF`), or keeps its owner in the file.
    `forgotten`: refresh tokens the revocation queue deletes once revoked (not left behind)."""
    users = {c.id for c in plan.of("delete", "integration_user")}
    credentials = {c.id for c in plan.of("delete", "credential")}
    principals: set[tuple[str, str]] = set()
    for change in plan.of("update", "credential"):
        if "principals" in change.diff:
            before, after = change.diff["principals"]
            removed = {p["name"] for p in before or ()} - {p["name"] for p in after or ()}
            principals |= {(change.id, name) for name in removed}
    owners = users | credentials | {owner for owner, _ in principals}
    if not owners:
        return []
    rows = session.execute(sa.select(col(SecretRef.external_id), col(SecretRef.owner_kind), col(SecretRef.owner),
                                     col(SecretRef.principal))
                           .where(col(SecretRef.owner).in_(sorted(owners))).order_by(col(SecretRef.external_id))).all()
    errors = []
    for ref, kind, owner, principal in rows:
        if ref in forgotten:
            continue
        if kind == "integration_user" and owner in users:
            what, path = f"integration user {owner} would be deleted", f"integration_users.{owner}"
        elif kind == "credential" and owner in credentials:
            what, path = f"credential {owner} would be deleted", f"credentials.{owner}"
        elif kind == "credential" and (owner, principal) in principals:
            what, path = f"principal {principal} would be removed from credential {owner}", f"credentials.{owner}.principals"
        else:
            continue
        errors.append({"location": filename, "path": path,
                       "message": f"{what}, but its secret {ref} is still stored; delete the secret first "
                                  f"(govern secrets delete {ref}) or keep it in the file"})
    return errors


def export_document(sessions) -> str:
    with session_scope(sessions) as session:
        specs = load_current(session).specs
    return EXPORT_HEADER + yaml.safe_dump(to_document(specs), sort_keys=False, allow_unicode=True, width=120)


__all__ = ["apply_document", "export_document", "ValidationFailed", "Plan"]
