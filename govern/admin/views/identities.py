"""Integration users, permission sets, their grants and assignments."""
from __future__ import annotations

from markupsafe import Markup, escape
from sqlmodel import select

from govern.admin.views.base import ReadOnlyView, describe_secret, fmt_list, fmt_time, secret_status, secrets_markup
from govern.store.tables import (Assignment, Decision, IntegrationUser, NamedCredential, PermissionSet,
                                 SecretRef, System)

_STATUS_BADGE = {"active": "success", "suspended": "warning", "retired": "secondary"}


def _status(view, context, model, name):
    badge = _STATUS_BADGE.get(model.status, "light")
    return Markup(f'<span class="badge badge-{badge}">{escape(model.status)}</span>')


def _client_secret(view, context, model, name):
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
    details_template = "govern_admin/integration_user.html"
    column_list = ("external_id", "name", "owner", "status", "review_date", "client_auth_method", "client_secret",
                   "allowed_scopes", "last_used_at")
    column_details_list = ("external_id", "name", "owner", "justification", "status", "review_date",
                           "source_system_id", "client_auth_method", "client_secret", "allowed_cidrs",
                           "allowed_scopes", "last_used_at", "created_at", "updated_at")
    column_labels = {"external_id": "Id", "client_secret": "Client secret", "source_system_id": "Source system"}
    column_searchable_list = ("external_id", "name", "owner")
    column_filters = ("status", "owner", "review_date", "client_auth_method")
    column_formatters = {"status": _status, "client_secret": _client_secret, "allowed_scopes": fmt_list,
                         "allowed_cidrs": fmt_list, "source_system_id": _source_system}

    def render(self, template, **kwargs):
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs.update(self.user_context(kwargs["model"]))
        return super().render(template, **kwargs)

    def user_context(self, user: IntegrationUser) -> dict:
        s = self.session
        assignments = s.execute(select(Assignment, PermissionSet)
                                .join(PermissionSet, PermissionSet.id == Assignment.permission_set_id)
                                .where(Assignment.integration_user_id == user.id)
                                .order_by(PermissionSet.external_id)).all()
        assigned_ids = {a.permission_set_id for a, _ in assignments}
        all_sets = s.execute(select(PermissionSet).order_by(PermissionSet.external_id)).scalars().all()
        decisions = s.execute(select(Decision).where(Decision.integration_user == user.external_id)
                              .order_by(Decision.at.desc()).limit(15)).scalars().all()
        return {
            "assignments": [{"id": a.id, "permission_set": ps.external_id, "permission_set_id": ps.id,
                             "expires_at": a.expires_at, "scopes": ps.scopes} for a, ps in assignments],
            "unassigned_sets": [ps for ps in all_sets if ps.id not in assigned_ids],
            "user_secrets": secret_status(s, "integration_user", user.external_id),
            "recent_decisions": decisions,
            "fmt_time": fmt_time,
        }


class PermissionSetView(ReadOnlyView):
    column_list = ("external_id", "description", "scopes", "api_types", "max_token_lifetime_seconds",
                   "allow_budget_overdraft", "source")
    column_details_list = column_list + ("system_permissions", "created_at", "updated_at")
    column_labels = {"external_id": "Id", "max_token_lifetime_seconds": "Max token lifetime (s)",
                     "allow_budget_overdraft": "Budget overdraft"}
    column_searchable_list = ("external_id", "description")
    column_filters = ("source", "allow_budget_overdraft")
    column_formatters = {"scopes": fmt_list, "api_types": fmt_list, "system_permissions": fmt_list}


class GrantView(ReadOnlyView):
    column_list = ("permission_set_id", "position", "named_credential_id", "principal", "methods", "paths")
    column_details_list = column_list + ("objects",)
    column_labels = {"permission_set_id": "Permission set", "named_credential_id": "Named credential"}
    column_searchable_list = ("principal",)
    column_formatters = {"permission_set_id": _ps_name, "named_credential_id": _nc_name, "methods": fmt_list,
                         "paths": fmt_list, "objects": fmt_list}


class AssignmentView(ReadOnlyView):
    column_list = ("integration_user_id", "permission_set_id", "expires_at", "created_at")
    column_labels = {"integration_user_id": "Integration user", "permission_set_id": "Permission set"}
    column_filters = ("expires_at", "created_at")
    column_formatters = {"integration_user_id": _user_name, "permission_set_id": _ps_name}


def _owner_secret(view, context, model, name):
    return describe_secret(model)


class SecretRefView(ReadOnlyView):
    """Where each secret lives and when it was set. Values are never read by the console."""

    column_list = ("owner_kind", "owner", "principal", "field", "status", "store", "schedule", "next_due_at")
    column_details_list = ("external_id", "owner_kind", "owner", "principal", "field", "status", "store", "mount",
                           "path", "rotator", "schedule", "overlap_seconds", "next_due_at", "created_at")
    column_labels = {"status": "Value (write-only)"}
    column_searchable_list = ("external_id", "owner", "field")
    column_filters = ("owner_kind", "store", "field", "next_due_at")
    column_formatters = {"status": _owner_secret}
    column_default_sort = ("owner", False)


__all__ = ["IntegrationUserView", "PermissionSetView", "GrantView", "AssignmentView", "SecretRefView",
           "secrets_markup", "SecretRef"]
