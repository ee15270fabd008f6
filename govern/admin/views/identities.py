"""Integration users, permission sets, their grants and assignments."""
from __future__ import annotations

import datetime as dt

from flask import abort, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup, escape
from sqlmodel import col, select

from govern.admin import commands, rightsizing
from govern.admin.conditions import describe as describe_conditions
from govern.admin.links import list_url
from govern.admin.roles import require_role, has_role
from govern.admin.views.actions import actor, correlation, parse_date, parse_list, perform
from govern.admin.views.base import ReadOnlyView, describe_secret, fmt_list, fmt_time, secret_status
from govern.bounds import SQL_ID_MAX, ascii_int
from govern.store.tables import (Assignment, Decision, IntegrationUser, NamedCredential, PermissionGrant,
                                 PermissionSet, SecretRef, System)
from govern.domain.secret import Secret
from govern.admin.views.buttons import post_button
from govern.errors import Conflict

_STATUS_BADGE = {"active": "success", "suspended": "warning", "retired": "secondary"}


def _status(view, context, model, name):
    badge = _STATUS_BADGE.get(model.status, "light")
    return Markup(f'<span class="badge badge-{badge}">{escape(model.status)}</span>')  # noqa: S704 - values escaped


def _client_secret(view, context, model, name):
    if model.client_auth_method == "federated" and model.trust is not None:  # docs/federation.md
        return f"none: trusts {', '.join(i.issuer for i in model.trust.issuers)} for {model.trust.subject}"
    if model.client_auth_method == "private_key_jwt":
        keys = len((model.jwks or {}).get("keys", []))
        return f"public keys registered: {keys}"
    if not model.client_secret_hash:
        return Markup('<span class="gv-muted">not set</span>')
    when = model.client_secret_set_at.strftime("%Y-%m-%d") if model.client_secret_set_at else "an unknown date"
    return f"set on {when} (only a hash is kept)"


def _source_system(view, context, model, name):
    if model.source_system_id is None:
        return ""
    row = view.session.get(System, model.source_system_id)
    return row.external_id if row else model.source_system_id


def _ps_name(view, context, model, name):
    row = view.session.get(PermissionSet, model.permission_set_id)
    return row.external_id if row else model.permission_set_id


def _user_name(view, context, model, name):
    row = view.session.get(IntegrationUser, model.integration_user_id)
    return row.external_id if row else model.integration_user_id


def _nc_name(view, context, model, name):
    if model.named_credential_id is None:
        return ""
    row = view.session.get(NamedCredential, model.named_credential_id)
    return row.external_id if row else model.named_credential_id


class IntegrationUserView(ReadOnlyView):
    """Read through the store; every write goes through govern.admin.commands (the config-as-code service)."""

    details_template = "govern_admin/integration_user.html"
    list_template = "govern_admin/integration_user_list.html"
    column_list = ("external_id", "owner", "status", "review_date", "client_secret", "last_used_at")
    column_details_list = ("external_id", "name", "owner", "justification", "status", "review_date",
                           "source_system_id", "client_auth_method", "client_secret", "allowed_cidrs",
                           "allowed_scopes", "last_used_at", "created_at", "updated_at")
    column_labels = {"external_id": "Id", "client_secret": "Client secret", "source_system_id": "Source system"}
    column_searchable_list = ("external_id", "name", "owner")
    column_filters = ("status", "owner", "review_date", "client_auth_method")

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        # "Granted vs used": one audit model per landscape version and decision-log position, not one per view.
        self.rightsizing_models = rightsizing.ModelCache()
    column_formatters = {"status": _status, "client_secret": _client_secret, "allowed_scopes": fmt_list,
                         "allowed_cidrs": fmt_list, "source_system_id": _source_system}

    def render(self, template, **kwargs):
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs.update(self.user_context(kwargs["model"]))
        return super().render(template, **kwargs)

    def user_context(self, user: IntegrationUser) -> dict:
        s = self.session
        assignments = s.execute(select(Assignment, PermissionSet)
                                .join(PermissionSet, col(PermissionSet.id) == col(Assignment.permission_set_id))
                                .where(col(Assignment.integration_user_id) == user.id)
                                .order_by(col(PermissionSet.external_id))).all()
        assigned_ids = {a.permission_set_id for a, _ in assignments}
        all_sets = s.execute(select(PermissionSet).order_by(col(PermissionSet.external_id))).scalars().all()
        decisions = s.execute(select(Decision).where(col(Decision.integration_user) == user.external_id)
                              .order_by(col(Decision.at).desc()).limit(15)).scalars().all()
        sizing = self.rightsizing_models.for_user(s, self.services, user.external_id)
        rec = sizing.recommendation
        usage = sizing.model.usage.get(user.external_id)
        return {
            "by_rule": self.decisions_by_rule(user.external_id),
            "window_days": rightsizing.WINDOW_DAYS,
            "granted": [{"permission_set": ps.id, "scopes": ps.scopes, "grants": ps.grants}
                        for ps in sizing.model.user_permission_sets(sizing.model.users[user.external_id])]
            if user.external_id in sizing.model.users else [],
            "used": sorted(usage.patterns, key=lambda p: -p.count) if usage else [],
            "recommendation": rec, "applicable": sizing.applicable,
            "unused": [rightsizing.describe_unused(u) for u in rec.unused] if rec else [],
            "decision_url": lambda d: url_for("console_decisions.details_view", id=d.hash),
            "assignments": [{"id": a.id, "permission_set": ps.external_id, "permission_set_id": ps.id,
                             "expires_at": a.expires_at, "scopes": ps.scopes} for a, ps in assignments],
            "unassigned_sets": [ps for ps in all_sets if ps.id not in assigned_ids],
            "user_secrets": secret_status(s, "integration_user", user.external_id),
            "recent_decisions": decisions,
            "fmt_time": fmt_time,
        }

    def decisions_by_rule(self, user: str) -> list[dict]:
        """The user's decisions of the window, allowed and denied, counted by the rule that decided them, each
        count linked to the decision list filtered to that user and rule."""
        since = self.services.clock.now() - dt.timedelta(days=rightsizing.WINDOW_DAYS)
        counts: dict[str, dict[str, int]] = {}
        for allowed, rules in self.session.execute(select(Decision.allowed, Decision.rules).where(
                Decision.integration_user == user, Decision.at >= since)):
            for rule in rules or ["(no rule recorded)"]:
                entry = counts.setdefault(rule, {"allowed": 0, "denied": 0})
                entry["allowed" if allowed else "denied"] += 1
        def link(rule: str, allowed: str) -> str:
            return list_url("console_decisions", ("User", "equals", user), ("Rule", "equals", rule),
                            ("Allowed by policy", "equals", allowed), ("Time", "greater than", since))

        return [{"rule": rule, **n, "allowed_url": link(rule, "1"), "denied_url": link(rule, "0")}
                for rule, n in sorted(counts.items(), key=lambda kv: -(kv[1]["allowed"] + kv[1]["denied"]))]

    # --- writes ----------------------------------------------------------------------------------

    @expose("/rightsize/", methods=("POST",))
    def rightsize_view(self):
        """Apply the user's right-sizing recommendation: admin only, recomputed on the server, audited."""
        require_role("admin")
        user = self._user_or_404(request.form.get("user"))
        perform(lambda: commands.apply_rightsizing(self.services, actor(), user.external_id),
                f"Right-sizing of {user.external_id} applied: it now holds only what it used.")
        return self._details(user.external_id)

    def _user_or_404(self, ext_id: str | None) -> IntegrationUser:
        user = self.session.execute(select(IntegrationUser).where(IntegrationUser.external_id == (ext_id or ""))
                                    ).scalars().first()
        if user is None:
            abort(404)
        return user

    def _details(self, user_ext_id: str):
        return redirect(url_for(".details_view", id=user_ext_id))

    @expose("/save/", methods=("GET", "POST"))
    def save_view(self):
        """Create (no ?user=) or edit an integration user: admin only."""
        require_role("admin")
        editing = request.values.get("user")
        user = self._user_or_404(editing) if editing else None
        systems = self.session.execute(select(System.external_id).order_by(System.external_id)).scalars().all()
        values = _form_values(user, self.session) if request.method == "GET" else request.form
        if request.method == "POST":
            ext_id = editing or (request.form.get("id") or "").strip()

            def run():
                fields = {"name": request.form.get("name", "").strip(), "owner": request.form.get("owner", "").strip(),
                          "justification": request.form.get("justification", "").strip(),
                          "review_date": parse_date(request.form.get("review_date"), "review_date"),
                          "source_system": request.form.get("source_system") or None,
                          "ip_ranges": parse_list(request.form.get("ip_ranges")),
                          "scopes": parse_list(request.form.get("scopes"))}
                commands.save_integration_user(self.services, actor(), ext_id, fields, create=not editing)

            if perform(run, f"Integration user {ext_id} {'saved' if editing else 'created'}."):
                self.session.expire_all()
                return self._details(ext_id)
        return self.render("govern_admin/integration_user_form.html", user=user, values=values, systems=systems)

    @expose("/status/", methods=("POST",))
    def status_view(self):
        """Suspend or reactivate: operator and admin."""
        require_role("operator")
        user = self._user_or_404(request.form.get("user"))
        status = request.form.get("status")
        if status not in ("active", "suspended"):
            abort(400)
        verb = "reactivated" if status == "active" else "suspended"
        perform(lambda: commands.set_user_status(self.services, actor(), user.external_id, status),
                f"{user.external_id} {verb}.")
        return self._details(user.external_id)

    @expose("/assign/", methods=("POST",))
    def assign_view(self):
        """Assign a permission set (granting permissions): admin only."""
        require_role("admin")
        user = self._user_or_404(request.form.get("user"))
        permission_set = request.form.get("permission_set") or ""
        perform(lambda: commands.assign_permission_set(self.services, actor(), user.external_id, permission_set,
                                                       parse_date(request.form.get("until"), "until")),
                f"{permission_set} assigned to {user.external_id}.")
        return self._details(user.external_id)

    @expose("/unassign/", methods=("POST",))
    def unassign_view(self):
        require_role("admin")
        user = self._user_or_404(request.form.get("user"))
        permission_set = request.form.get("permission_set") or ""
        perform(lambda: commands.unassign_permission_set(self.services, actor(), user.external_id, permission_set),
                f"{permission_set} removed from {user.external_id}.")
        return self._details(user.external_id)

    @expose("/set-secret/", methods=("POST",))
    def set_secret_view(self):
        """Set the user's client secret through the secret service: admin only. The value is never echoed."""
        require_role("admin")
        user = self._user_or_404(request.form.get("user"))
        value = Secret(request.form.get("value") or "")
        perform(lambda: commands.set_secret(self.services, actor(), owner_kind="integration_user",
                                            owner=user.external_id, field="client_secret", value=value,
                                            correlation_id=correlation()),
                f"Client secret of {user.external_id} set.")
        return self._details(user.external_id)


def _form_values(user: IntegrationUser | None, session) -> dict:
    if user is None:
        return {}
    source = session.get(System, user.source_system_id) if user.source_system_id else None
    return {"id": user.external_id, "name": user.name, "owner": user.owner or "",
            "justification": user.justification or "",
            "review_date": user.review_date.isoformat() if user.review_date else "",
            "source_system": source.external_id if source else "",
            "ip_ranges": ", ".join(user.allowed_cidrs or []), "scopes": ", ".join(user.allowed_scopes or [])}


class PermissionSetView(ReadOnlyView):
    details_template = "govern_admin/permission_set.html"
    column_list = ("external_id", "description", "scopes", "max_token_lifetime_seconds")
    column_details_list = column_list + ("api_types", "allow_budget_overdraft", "source", "system_permissions",
                                         "created_at", "updated_at")
    column_labels = {"external_id": "Id", "max_token_lifetime_seconds": "Max token lifetime (s)",
                     "allow_budget_overdraft": "Budget overdraft"}
    column_searchable_list = ("external_id", "description")
    column_filters = ("source", "allow_budget_overdraft")
    column_formatters = {"scopes": fmt_list, "api_types": fmt_list, "system_permissions": fmt_list}

    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            s = self.session
            kwargs["grants"] = s.execute(
                select(PermissionGrant, NamedCredential.external_id)
                .outerjoin(NamedCredential, NamedCredential.id == PermissionGrant.named_credential_id)
                .where(PermissionGrant.permission_set_id == model.id).order_by(PermissionGrant.position)).all()
            kwargs["conditions"] = describe_conditions(model.conditions)
            kwargs["holders"] = s.execute(
                select(IntegrationUser, Assignment.expires_at)
                .join(Assignment, Assignment.integration_user_id == IntegrationUser.id)
                .where(Assignment.permission_set_id == model.id).order_by(IntegrationUser.external_id)).all()
        return super().render(template, **kwargs)


class GrantView(ReadOnlyView):
    url_key = None  # a grant is shown on its permission set's page
    column_list = ("permission_set_id", "position", "named_credential_id", "principal", "methods", "paths")
    column_details_list = column_list + ("objects",)
    column_labels = {"permission_set_id": "Permission set", "named_credential_id": "Named credential"}
    column_searchable_list = ("principal",)
    column_formatters = {"permission_set_id": _ps_name, "named_credential_id": _nc_name, "methods": fmt_list,
                         "paths": fmt_list, "objects": fmt_list}


class AssignmentView(ReadOnlyView):
    url_key = None  # an assignment is shown on its user's and its permission set's pages
    column_list = ("integration_user_id", "permission_set_id", "expires_at", "created_at")
    column_labels = {"integration_user_id": "Integration user", "permission_set_id": "Permission set"}
    column_filters = ("expires_at", "created_at")
    column_formatters = {"integration_user_id": _user_name, "permission_set_id": _ps_name}


def _owner_secret(view, context, model, name):
    return describe_secret(model)


def _rotate_button(view, context, model, name):
    if not model.rotator:
        return Markup('<span class="gv-muted">no rotator</span>')
    if not has_role("operator"):
        return model.rotator
    return post_button(url_for(".rotate_view"), "Rotate now", {"ref": model.id}, element_id=f"gv-rotate-{model.id}",
                       confirm=f"Rotate {model.external_id} now? A new value is made and the current one is "
                               "retired after the overlap.")


class SecretRefView(ReadOnlyView):
    """Where each secret lives and when it was set. Values are never read by the console."""

    column_list = ("owner", "principal", "field", "status", "next_due_at", "rotate")
    column_details_list = ("external_id", "owner_kind", "owner", "principal", "field", "status", "store", "mount",
                           "path", "rotator", "schedule", "overlap_seconds", "next_due_at", "created_at")
    column_labels = {"status": "Value (write-only)", "rotate": "Rotation", "next_due_at": "Next rotation"}
    column_searchable_list = ("external_id", "owner", "field")
    column_filters = ("owner_kind", "store", "field", "next_due_at")
    column_formatters = {"status": _owner_secret, "rotate": _rotate_button}
    column_default_sort = ("owner", False)

    @expose("/rotate/", methods=("POST",))
    def rotate_view(self):
        """Start a rotation run now (operator and admin); a rotation worker executes it."""
        require_role("operator")
        key = ascii_int(request.form.get("ref"), high=SQL_ID_MAX)  # else no such row
        ref = self.session.get(SecretRef, key) if key is not None else None
        if ref is None:
            abort(404)
        def run():
            run_id, why = commands.rotate_now(self.services, actor(), ref.id)
            if run_id is None:
                raise Conflict(f"{ref.external_id} was not started: {why}")
            return run_id

        perform(run, lambda run_id: f"Rotation of {ref.external_id} started (run {run_id}); "
                                    "a worker will carry it out.")
        return redirect(url_for("console_rotations.index_view"))



class RotationScheduleView(SecretRefView):
    """Secrets that have a rotator, soonest due first: the rotation schedule, with "Rotate now" for operators."""

    column_list = ("next_due_at", "owner", "field", "rotator", "schedule", "rotate")
    column_labels = {"status": "Current version", "rotate": "Rotation", "next_due_at": "Next due"}
    column_default_sort = ("next_due_at", False)

    def get_query(self):
        return super().get_query().filter(SecretRef.rotator.is_not(None))

    def get_count_query(self):
        return super().get_count_query().filter(SecretRef.rotator.is_not(None))
