"""Audit findings and their suppressions."""
from __future__ import annotations

from flask import abort, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup, escape

from govern.admin import commands
from govern.admin.roles import require_role
from govern.admin.views.actions import actor, parse_date, perform
from govern.admin.views.base import ReadOnlyView, readable
from govern.bounds import SQL_ID_MAX, ascii_int
from govern.store.tables import Finding
from govern.errors import ValidationFailed

SEVERITY_BADGE = {"critical": "danger", "high": "danger", "medium": "warning", "low": "info", "info": "secondary"}


def _severity(view, context, model, name):
    return Markup(f'<span class="badge badge-{SEVERITY_BADGE.get(model.severity, "light")}">'  # noqa: S704 - values escaped
                  f'{escape(model.severity)}</span>')


def _evidence(view, context, model, name):
    # The stored evidence also carries the finding's location and suppression (keys starting with "_"),
    # shown in their own rows: readable() leaves them out.
    return readable(model.evidence or {})


def _location(view, context, model, name):
    loc = (model.evidence or {}).get("_location")
    if not loc:
        return Markup('<span class="gv-muted">not read from a file</span>')
    return Markup(f"<code>{escape(loc.get('file', ''))}:{escape(loc.get('line', ''))}</code>")  # noqa: S704 - values escaped


def _suppression(view, context, model, name):
    return readable((model.evidence or {}).get("_suppression"))


def _expiry(view, context, model, name):
    """The expiry date, marked when it has passed or is within two weeks (the finding reopens then)."""
    today = view.services.clock.now().date()
    days = (model.expires_at - today).days
    if days < 0:
        return Markup(f'{escape(model.expires_at.isoformat())} <span class="badge badge-secondary">expired</span>')  # noqa: S704 - values escaped
    if days <= 14:
        return Markup(f'<span class="gv-attention"><span class="sr-only">Needs attention: </span>'  # noqa: S704 - values escaped
                      f'{escape(model.expires_at.isoformat())} (in {days} d)</span>')
    return model.expires_at.isoformat()


class FindingView(ReadOnlyView):
    """Findings come from audit runs; an admin may accept a finding's risk until a date (a suppression)."""

    details_template = "govern_admin/finding.html"
    column_list = ("severity", "rule_id", "title", "source", "subject_kind", "subject", "status", "first_seen_at",
                   "last_seen_at")
    column_details_list = column_list + ("external_id", "evidence", "location", "suppression", "remediation",
                                         "resolved_at")
    column_labels = {"rule_id": "Rule", "subject_kind": "Kind", "external_id": "Fingerprint",
                     "location": "Declared in", "suppression": "Suppressed by"}
    column_searchable_list = ("rule_id", "title", "subject")
    column_filters = ("severity", "status", "rule_id", "source", "subject_kind", "first_seen_at")
    column_formatters = {"severity": _severity, "evidence": _evidence, "location": _location,
                         "suppression": _suppression}
    column_default_sort = ("last_seen_at", True)

    @expose("/suppress/", methods=("POST",))
    def suppress_view(self):
        require_role("admin")
        key = ascii_int(request.form.get("finding"), high=SQL_ID_MAX)  # else no such row
        finding = self.session.get(Finding, key) if key is not None else None
        if finding is None:
            abort(404)
        form = request.form
        perform(lambda: commands.suppress_finding(
                    self.services, actor(), rule_id=finding.rule_id, subject=finding.subject,
                    owner=form.get("owner", "").strip(), justification=form.get("justification", "").strip(),
                    ticket=form.get("ticket", "").strip(), until=parse_date(form.get("until"), "until")
                    or _missing_until()),
                lambda ext_id: f"Suppressed as {ext_id}; the next audit run marks the finding suppressed.")
        return redirect(url_for(".details_view", id=finding.external_id))


def _missing_until():
    raise ValidationFailed([{"location": "until", "message": "is required"}])


class SuppressionView(ReadOnlyView):
    column_list = ("external_id", "rule_id", "subject", "owner", "ticket", "expires_at", "created_by")
    column_details_list = column_list + ("justification", "created_at")
    column_searchable_list = ("external_id", "rule_id", "subject", "owner", "ticket")
    column_filters = ("rule_id", "expires_at", "owner")
    column_labels = {"external_id": "Id", "rule_id": "Rule", "expires_at": "Expires"}
    column_formatters = {"expires_at": _expiry}
    column_default_sort = ("expires_at", False)
