"""Audit runs: what each `govern audit` found (new, resolved and reopened since the run before), a run's
findings with their evidence as fields, the run's report as HTML, JSON, CSV and SARIF (the renderers behind
`govern audit report`), and the suppressions about to expire. Read-only: every role may read it.
"""
from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from flask import Response, abort, request, url_for
from flask_admin import BaseView, expose

from govern.admin.links import list_url
from govern.admin.roles import ConsoleAccess
from govern.admin.views.base import readable, relative_time
from govern.audit import html as html_report
from govern.audit import report as reports
from govern.audit.engine import SEVERITIES
from govern.bounds import SQL_ID_MAX, ascii_int
from govern.store.tables import AuditRun, Finding, Suppression

PAGE_SIZE = 25
EXPIRING_DAYS = 14  # a suppression ending within this many days is listed as about to expire

# format -> (content type, file extension, renderer of the stored report document)
DOWNLOADS = {
    "html": ("text/html; charset=utf-8", "html", html_report.to_html),
    "json": ("application/json", "json", reports.to_json),
    "csv": ("text/csv; charset=utf-8", "csv", reports.to_csv),
    "sarif": ("application/sarif+json", "sarif", lambda doc: json.dumps(reports.to_sarif(doc), indent=2, default=str)),
}


def _location(loc: dict | None) -> str:
    if not loc:
        return ""
    return f"{loc.get('file', '')}:{loc.get('line', '')}" if loc.get("line") else str(loc.get("file", ""))


class AuditRunsView(ConsoleAccess, BaseView):
    def __init__(self, session, services, **kw):
        super().__init__(**kw)
        self.session = session
        self.services = services

    def _now(self) -> dt.datetime:
        return self.services.clock.now()

    @expose("/")
    def index(self):
        page = ascii_int(request.args.get("page"), high=10_000) or 0
        s = self.session
        total = s.execute(sa.select(sa.func.count()).select_from(AuditRun)).scalar_one()
        rows = s.execute(sa.select(AuditRun).order_by(AuditRun.id.desc()).limit(PAGE_SIZE)
                         .offset(page * PAGE_SIZE)).scalars().all()
        now = self._now()
        runs = [{"id": r.id, "at": relative_time(r.started_at, now), "sources": ", ".join(r.sources or [r.source]),
                 "counts": {sev: (r.counts or {}).get(sev, 0) for sev in SEVERITIES},
                 "suppressed": (r.counts or {}).get("suppressed", 0),
                 "new": len(r.new or []), "resolved": len(r.resolved or []), "reopened": len(r.reopened or []),
                 "has_report": bool(r.report)} for r in rows]
        today = now.date()
        expiring = s.execute(sa.select(Suppression).where(
            Suppression.expires_at >= today, Suppression.expires_at <= today + dt.timedelta(days=EXPIRING_DAYS))
            .order_by(Suppression.expires_at)).scalars().all()
        return self.render("govern_admin/audit_runs.html", runs=runs, total=total, page=page,
                           pages=(total + PAGE_SIZE - 1) // PAGE_SIZE, severities=SEVERITIES, expiring=expiring,
                           expiring_days=EXPIRING_DAYS, today=today,
                           suppressions_url=url_for("console_suppressions.index_view"))

    def _run_or_404(self, run_id: str) -> AuditRun:
        number = ascii_int(run_id, high=SQL_ID_MAX)
        run = self.session.get(AuditRun, number) if number is not None else None
        if run is None:
            abort(404)
        return run

    @expose("/<run_id>/")
    def run_view(self, run_id):
        run = self._run_or_404(run_id)
        report = run.report or {}
        # A finding's page is named by its fingerprint; a run's findings that a later run resolved keep theirs.
        known = set(self.session.execute(sa.select(Finding.external_id).where(
            Finding.external_id.in_([f["fingerprint"] for f in report.get("findings", [])] or [""]))).scalars())
        status_filter = request.args.get("status") or ""
        findings = [f for f in report.get("findings", []) if not status_filter or f["status"] == status_filter]
        changes = {kind: set(run.__getattribute__(kind) or []) for kind in ("new", "resolved", "reopened")}
        items = []
        for f in findings:
            change = next((k for k in ("new", "reopened") if f["fingerprint"] in changes[k]), "")
            items.append({**f, "evidence_html": readable(f.get("evidence") or {}), "where": _location(f.get("location")),
                          "change": change, "has_page": f["fingerprint"] in known,
                          "suppression_html": readable(f.get("suppression")) if f.get("suppression") else None})
        resolved = self.session.execute(sa.select(Finding).where(
            Finding.external_id.in_(list(changes["resolved"]) or [""]))).scalars().all()
        summary = report.get("summary", {})
        return self.render("govern_admin/audit_run.html", run=run, report=report, findings=items,
                           severities=SEVERITIES, summary=summary, resolved=resolved, status_filter=status_filter,
                           at=relative_time(run.started_at, self._now()), sources=", ".join(run.sources or [run.source]),
                           downloads=list(DOWNLOADS), counts={k: len(v) for k, v in changes.items()},
                           findings_url=list_url("console_findings", ("Status", "equals", "open")))

    @expose("/<run_id>/report.<fmt>")
    def download_view(self, run_id, fmt):
        if fmt not in DOWNLOADS:
            abort(404)
        run = self._run_or_404(run_id)
        if not run.report:
            abort(404, f"Audit run {run.id} stored no report.")
        content_type, extension, render = DOWNLOADS[fmt]
        body = render(dict(run.report))
        return Response(body, content_type=content_type, headers={
            "Content-Disposition": f'attachment; filename="govern-audit-run-{run.id}.{extension}"'})
