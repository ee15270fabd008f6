"""The decision log (searchable by correlation id, user, credential, outcome and time) and the admin action log."""
from __future__ import annotations


import sqlalchemy as sa
from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from markupsafe import Markup, escape
from sqlmodel import select

from govern.admin.conditions import denial_markup
from govern.admin.views.base import ReadOnlyView, fmt_list, readable, short_id
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


class RuleFilter(BaseSQLAFilter):
    """Decisions that name one rule (`permit:<permission set>`, `forbid:<policy id>`, `deny:<reason>`): the
    links from a policy's and a user's counts by rule."""

    def __init__(self):
        super().__init__(Decision.rules, "Rule")

    def apply(self, query, value, alias=None):
        needle = '"' + str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"'
        return query.filter(sa.cast(Decision.rules, sa.Text).like(f"%{needle}%", escape="\\"))

    def operation(self):
        return "equals"


def _outcome(view, context, model, name):
    outcome = model.outcome or ("allow" if model.allowed else "deny")
    badge = Markup(f'<span class="badge {_BADGES.get(outcome, "badge-secondary")}">{escape(outcome)}</span>')  # noqa: S704 - values escaped
    if model.error_code:
        badge += Markup(f' <code>{escape(model.error_code)}</code>')  # noqa: S704 - values escaped
    if outcome == "deny":
        badge += denial_markup(model.rules)  # a permission set's condition, in words
    return badge


def _change(view, context, model, name):
    return readable(getattr(model, name))


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None or value == "" else str(value)


def _change_text(view, context, model, name):
    """What an admin action changed, in words: `status: active -> suspended`; the whole text in the title."""
    before, after = model.before or {}, model.after or {}
    parts = []
    for key in list(dict.fromkeys([*before, *after])):
        if key in before and key in after:
            if before[key] != after[key]:
                parts.append(f"{key}: {_plain(before[key])} \u2192 {_plain(after[key])}")
        elif key in after:
            parts.append(f"{key}: {_plain(after[key])}")
        else:
            parts.append(f"{key} removed")
    text = "; ".join(parts)
    if len(text) <= 80:
        return text
    return Markup(f'<span title="{escape(text)}">{escape(text[:77])}&hellip;</span>')  # noqa: S704 - values escaped


class DecisionView(ReadOnlyView):
    url_key = "hash"  # a decision's page is named by its chain hash (unique, and what `govern log verify` reports)
    # The list answers "what happened, to whom, and how did it end"; the request's details are on its page.
    column_list = ("at", "correlation_id", "integration_user", "named_credential", "outcome", "upstream_status",
                   "latency_ms")
    column_details_list = ("at", "correlation_id", "integration_user", "action", "named_credential", "method",
                           "path", "outcome", "rules", "upstream_status", "latency_ms", "allowed", "error_code",
                           "principal", "resource_object", "api_type", "scopes_requested", "scopes_granted",
                           "source_ip", "key_id", "prev_hash", "hash")
    column_labels = {"at": "Time", "correlation_id": "Correlation", "outcome": "Outcome", "allowed": "Allowed by policy",
                     "integration_user": "User", "named_credential": "Credential", "latency_ms": "Latency (ms)",
                     "upstream_status": "Upstream", "error_code": "Error", "key_id": "Chain key"}
    column_searchable_list = ("correlation_id", "integration_user", "named_credential", "path")
    column_filters = ("at", "outcome", "allowed", "integration_user", "named_credential", "correlation_id", "action",
                      "upstream_status", "error_code", SystemFilter(), RuleFilter())
    column_formatters = {"outcome": _outcome, "rules": fmt_list, "scopes_requested": fmt_list,
                         "scopes_granted": fmt_list, "correlation_id": short_id}
    column_formatters_detail = {"outcome": _outcome, "rules": fmt_list, "scopes_requested": fmt_list,
                                "scopes_granted": fmt_list}
    column_default_sort = ("at", True)


class AdminActionView(ReadOnlyView):
    url_key = None  # no name of its own: the list shows what changed
    column_list = ("at", "actor", "action", "subject", "change", "correlation_id")
    column_details_list = ("at", "actor", "action", "subject_kind", "subject", "before", "after", "correlation_id")
    column_searchable_list = ("actor", "action", "subject", "correlation_id")
    column_filters = ("at", "actor", "action", "subject_kind")
    column_labels = {"at": "Time", "subject_kind": "Kind", "correlation_id": "Correlation", "change": "Change"}
    column_formatters = {"before": _change, "after": _change, "correlation_id": short_id, "change": _change_text}
    column_formatters_detail = {"before": _change, "after": _change}
    column_default_sort = ("at", True)
