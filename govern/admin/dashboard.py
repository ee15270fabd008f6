"""The dashboard at /admin: per-system health, findings by severity with their trend, rotations due and failed.

Circuit-breaker state comes from the proxy when this build has it (`govern.broker.proxy.breaker_states`,
or a callable in services.circuit_breaker_states; either returns [{"system", "state", ...}]);
otherwise the page says "n/a" rather than guessing. Budget used today counts upstream calls in the
decision log since UTC midnight against the system's declared daily budget.
"""
from __future__ import annotations

import datetime as dt

from flask_admin import AdminIndexView, expose

from govern.admin import stats, svg
from govern.admin.links import list_url
from govern.admin.roles import ConsoleAccess
from govern.admin.views.base import fmt_time
from govern.broker.proxy import breaker_states
from govern.domain.expiry import HORIZONS, buckets, forecast, whole_days
from govern.store.expiry import expiry_items


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
            overdue = stats.overdue_rotations(session, now)
            reconnect = stats.principals_needing_reconnect(session)
            expiring = buckets(forecast(expiry_items(session), now, within_days=HORIZONS[-1]))
        breaker_states = self._breaker_states()
        hours = stats.hour_labels(now)
        rows = [self._row(s, now, hours, (breaker_states or {}).get(s.system)) for s in systems]
        links = {
            "findings": {sev: list_url("console_findings", ("Severity", "equals", sev), ("Status", "equals", "open"))
                         for sev in stats.SEVERITIES},
            "due": list_url("console_rotation_schedule", ("Next due", "smaller than", now + dt.timedelta(days=7))),
            "overdue": list_url("console_rotation_schedule", ("Next due", "smaller than", now)),
            "failed": list_url("console_rotations", ("State", "in list", ",".join(stats.FAILED_RUN_STATES))),
            "reconnect": list_url("console_principals", ("Needs reconnect since", "empty", "0")),
        }
        attention = [row["s"].system for row in rows if row["attention"]]
        return self.render("govern_admin/dashboard.html", now=now, rows=rows, findings=findings,
                           severities=stats.SEVERITIES, palette=svg.PALETTE,
                           trend=svg.lines(trend, trend_labels, title="Open findings by severity, 14 days"),
                           due=due, failed=failed, overdue=overdue, reconnect=reconnect, links=links,
                           attention=attention, expiring=expiring, whole_days=whole_days,
                           expiry_lead=self.services.settings.expiry_alert_days,
                           breakers_known=breaker_states is not None, fmt_time=fmt_time,
                           failure_threshold=stats.FAILURE_ATTENTION, budget_threshold=stats.BUDGET_ATTENTION)

    @staticmethod
    def _row(s: stats.SystemStats, now: dt.datetime, hours: list[str], breaker: str | None) -> dict:
        """One system's figures, each with the decision list behind it, and what needs attention."""
        since = now - dt.timedelta(hours=24)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        system = ("System", "equals", s.system)
        window = ("Time", "greater than", since - dt.timedelta(seconds=1))  # the figures count at >= since

        def decisions(*more):
            return list_url("console_decisions", system, window, *more)

        return {"s": s, "breaker": breaker, "breaker_attention": breaker == "open",
                "attention": breaker == "open" or s.budget_attention or s.failure_attention,
                "chart": svg.bars(s.hourly, title=f"{s.system}: decisions per hour", labels=hours),
                "gauge": svg.gauge(s.budget_used),
                "links": {"volume": decisions(), "success": decisions(("Outcome", "equals", "allow")),
                          "denied": decisions(("Outcome", "equals", "deny")),
                          "failed": decisions(("Outcome", "equals", "error")),
                          "today": list_url("console_decisions", system,
                                            ("Time", "greater than", midnight - dt.timedelta(seconds=1)),
                                            ("Upstream", "empty", "0"))}}

    def _breaker_states(self) -> dict[str, str] | None:
        source = self.services.circuit_breaker_states
        if source is None:
            services = self.services
            source = lambda: breaker_states(services.proxy, sessions=services.sessions,  # noqa: E731
                                            cache=services.cache, clock=services.clock)
        try:
            return {item["system"]: item["state"] for item in source()}
        except Exception:  # noqa: BLE001 - the dashboard must render even when the breakers cannot be read
            return None
