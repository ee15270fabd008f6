"""The dashboard at /admin: per-system health, findings by severity with their trend, rotations due and failed.

Circuit-breaker state comes from the broker when it is wired (services.extras["circuit_breaker_states"]: a
callable returning {named_credential: state}); otherwise the page says "n/a" rather than guessing.
"""
from __future__ import annotations

from flask_admin import AdminIndexView, expose

from govern.admin import stats, svg
from govern.admin.roles import ConsoleAccess
from govern.admin.views.base import fmt_time


class DashboardView(ConsoleAccess, AdminIndexView):
    def __init__(self, services, **kw):
        super().__init__(**kw)
        self.services = services

    @expose("/")
    def index(self):
        now = self.services.clock.now()
        with self.services.sessions() as session:
            systems = stats.system_stats(session, now)
            findings = stats.open_findings(session)
            trend_labels, trend = stats.findings_trend(session, now)
            due = stats.rotations_due(session, now)
            failed = stats.failed_rotations(session)
        breaker_states = self._breaker_states()
        hours = stats.hour_labels(now)
        rows = [{"s": s, "chart": svg.bars(s.hourly, title=f"{s.system}: decisions per hour", labels=hours),
                 "gauge": svg.gauge(s.budget_used)} for s in systems]
        return self.render("govern_admin/dashboard.html", now=now, rows=rows, findings=findings,
                           severities=stats.SEVERITIES, palette=svg.PALETTE,
                           trend=svg.lines(trend, trend_labels, title="Open findings by severity, 14 days"),
                           due=due, failed=failed, breaker_states=breaker_states, fmt_time=fmt_time)

    def _breaker_states(self):
        source = self.services.extras.get("circuit_breaker_states")
        if source is None:
            return None
        try:
            return dict(source())
        except Exception:  # noqa: BLE001 - the dashboard must render even when the broker cannot answer
            return None
