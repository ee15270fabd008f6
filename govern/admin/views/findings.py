"""Audit findings and their suppressions."""
from __future__ import annotations

import json

from markupsafe import Markup, escape

from govern.admin.views.base import ReadOnlyView

SEVERITY_BADGE = {"critical": "danger", "high": "danger", "medium": "warning", "low": "info", "info": "secondary"}


def _severity(view, context, model, name):
    return Markup(f'<span class="badge badge-{SEVERITY_BADGE.get(model.severity, "light")}">'
                  f'{escape(model.severity)}</span>')


def _evidence(view, context, model, name):
    return Markup(f"<pre class='mb-0'>{escape(json.dumps(model.evidence or {}, indent=2, default=str))}</pre>")


class FindingView(ReadOnlyView):
    column_list = ("severity", "rule_id", "title", "subject_kind", "subject", "status", "first_seen_at",
                   "last_seen_at")
    column_details_list = column_list + ("external_id", "evidence", "remediation", "resolved_at")
    column_labels = {"rule_id": "Rule", "subject_kind": "Kind"}
    column_searchable_list = ("rule_id", "title", "subject")
    column_filters = ("severity", "status", "rule_id", "subject_kind", "first_seen_at")
    column_formatters = {"severity": _severity, "evidence": _evidence}
    column_default_sort = ("last_seen_at", True)


class SuppressionView(ReadOnlyView):
    column_list = ("external_id", "rule_id", "subject", "owner", "ticket", "expires_at", "created_by")
    column_details_list = column_list + ("justification", "created_at")
    column_labels = {"external_id": "Id", "rule_id": "Rule"}
    column_searchable_list = ("external_id", "rule_id", "subject", "owner", "ticket")
    column_filters = ("rule_id", "expires_at", "owner")
