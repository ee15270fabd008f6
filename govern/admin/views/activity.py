"""The decision log (searchable by correlation id, user, credential, outcome and time) and the admin action log."""
from __future__ import annotations

import json

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from markupsafe import Markup, escape
from sqlmodel import select

from govern.admin.views.base import ReadOnlyView, fmt_list, short_id
from govern.store.tables import Decision, ExternalCredential, NamedCredential, System


_BADGES = {"allow": "badge-success", "deny": "badge-danger", "error": "badge-warning"}


class SystemFilter(BaseSQLAFilter):
    """Decisions about any named credential of one system (the dashboard's per-system figures link here)."""

    def __init__(self):
        super().__init__(Decision.named_credential, "System")

    def apply(self, query, value, alias=None):
        names = (select(NamedCredential.external_id)
                 .join(ExternalCredential, ExternalCredential.id == NamedCredential.credential_id)
                 .join(System, System.id == ExternalCredential.system_id).where(System.external_id == value))
        return query.filter(Decision.named_credential.in_(names))

    def operation(self):
        return "equals"


def _outcome(view, context, model, name):
    outcome = model.outcome or ("allow" if model.allowed else "deny")
    badge = Markup(f'<span class="badge {_BADGES.get(outcome, "badge-secondary")}">{escape(outcome)}</span>')  # noqa: S704 - values escaped
    if model.error_code:
        badge += Markup(f' <code>{escape(model.error_code)}</code>')  # noqa: S704 - values escaped
    return badge


def _change(view, context, model, name):
    value = getattr(model, name)
    if not value:
        return ""
    return Markup(f"<code>{escape(json.dumps(value, sort_keys=True, default=str))}</code>")  # noqa: S704 - values escaped


class DecisionView(ReadOnlyView):
    # The list answers "what happened, to whom, and how did it end"; the request's details are on its page.
    column_list = ("at", "correlation_id", "integration_user", "named_credential", "outcome", "upstream_status",
                   "latency_ms")
    column_details_list = ("id", "at", "correlation_id", "integration_user", "action", "named_credential", "method",
                           "path", "outcome", "rules", "upstream_status", "latency_ms", "allowed", "error_code",
                           "principal", "resource_object", "api_type", "scopes_requested", "scopes_granted",
                           "source_ip", "key_id", "prev_hash", "hash")
    column_labels = {"at": "Time", "correlation_id": "Correlation", "outcome": "Outcome", "allowed": "Allowed by policy",
                     "integration_user": "User", "named_credential": "Credential", "latency_ms": "Latency (ms)",
                     "upstream_status": "Upstream", "error_code": "Error", "key_id": "Chain key"}
    column_searchable_list = ("correlation_id", "integration_user", "named_credential", "path")
    column_filters = ("at", "outcome", "allowed", "integration_user", "named_credential", "correlation_id", "action",
                      "upstream_status", "error_code", SystemFilter())
    column_formatters = {"outcome": _outcome, "rules": fmt_list, "scopes_requested": fmt_list,
                         "scopes_granted": fmt_list, "correlation_id": short_id}
    column_formatters_detail = {"outcome": _outcome, "rules": fmt_list, "scopes_requested": fmt_list,
                                "scopes_granted": fmt_list}
    column_default_sort = ("at", True)


class AdminActionView(ReadOnlyView):
    column_list = ("at", "actor", "action", "subject", "correlation_id")
    column_details_list = ("at", "actor", "action", "subject_kind", "subject", "before", "after", "correlation_id")
    column_labels = {"at": "Time", "subject_kind": "Kind", "correlation_id": "Correlation"}
    column_searchable_list = ("actor", "action", "subject", "correlation_id")
    column_filters = ("at", "actor", "action", "subject_kind")
    column_formatters = {"before": _change, "after": _change, "correlation_id": short_id}
    column_formatters_detail = {"before": _change, "after": _change}
    column_default_sort = ("at", True)
