"""The decision log (searchable by correlation id, user, credential, outcome and time) and the admin action log."""
from __future__ import annotations

import json

from markupsafe import Markup, escape

from govern.admin.views.base import ReadOnlyView, fmt_list


def _outcome(view, context, model, name):
    if model.allowed:
        return Markup('<span class="badge badge-success">allow</span>')
    return Markup('<span class="badge badge-danger">deny</span>')


def _change(view, context, model, name):
    value = getattr(model, name)
    if not value:
        return ""
    return Markup(f"<code>{escape(json.dumps(value, sort_keys=True, default=str))}</code>")


class DecisionView(ReadOnlyView):
    column_list = ("at", "correlation_id", "integration_user", "action", "named_credential", "method", "path",
                   "allowed", "rules", "upstream_status", "latency_ms")
    column_details_list = column_list + ("principal", "resource_object", "api_type", "scopes_requested",
                                         "scopes_granted", "source_ip", "prev_hash", "hash")
    column_labels = {"at": "Time (UTC)", "allowed": "Outcome", "integration_user": "User",
                     "named_credential": "Credential", "latency_ms": "Latency (ms)", "upstream_status": "Upstream"}
    column_searchable_list = ("correlation_id", "integration_user", "named_credential", "path")
    column_filters = ("at", "allowed", "integration_user", "named_credential", "correlation_id", "action",
                      "upstream_status")
    column_formatters = {"allowed": _outcome, "rules": fmt_list, "scopes_requested": fmt_list,
                         "scopes_granted": fmt_list}
    column_default_sort = ("at", True)


class AdminActionView(ReadOnlyView):
    column_list = ("at", "actor", "action", "subject_kind", "subject", "before", "after", "correlation_id")
    column_labels = {"at": "Time (UTC)", "subject_kind": "Kind"}
    column_searchable_list = ("actor", "action", "subject", "correlation_id")
    column_filters = ("at", "actor", "action", "subject_kind")
    column_formatters = {"before": _change, "after": _change}
    column_default_sort = ("at", True)
