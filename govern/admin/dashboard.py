"""The dashboard at /admin: per-system health, findings by severity with their trend, rotations due and failed.

Circuit-breaker state comes from the proxy when this build has it (`govern.broker.proxy.breaker_states`,
or a callable in services.circuit_breaker_states; either returns [{"system", "state", ...}]);
otherwise the page says "n/a" rather than guessing. Budget used today counts upstream calls in the
decision log since UTC midnight against the system's declared daily budget.
"""
from __future__ import annotations

from flask_admin import AdminIndexView, expose

from govern.admin import stats, svg
from govern.admin.roles import ConsoleAccess
from govern.admin.views.base import fmt_time
from govern.broker.proxy import breaker_states


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

    def _breaker_states(self) -> dict[str, str] | None:
        source = self.services.circuit_breaker_states
        if source is None:
            source = lambda: breaker_states(self.services)  # noqa: E731
        try:
            return {item["system"]: item["state"] for item in source()}
        except Exception:  # noqa: BLE001 - the dashboard must render even when the breakers cannot be read
            return None
