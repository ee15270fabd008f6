"""Dashboard figures come from SQL aggregates over the decision, finding and rotation tables."""
from __future__ import annotations

import datetime as dt

from tests.admin.conftest import sign_in
from tests.admin.seed import seed_decisions
from tests.factories import make_landscape


def _decisions(services, now):
    seed_decisions(services, now)
    from govern.store.db import session_scope
    from govern.store.tables import Decision

    with session_scope(services.sessions) as s:
        # Older than 24 hours: not counted.
        s.add(Decision(at=now - dt.timedelta(hours=30), correlation_id="old", action="call", named_credential="erp-api",
                       allowed=True, latency_ms=9999.0, prev_hash="x", hash="old"))


def test_system_figures(services, clock):
    from govern.admin.stats import system_stats

    make_landscape(services, daily_api_budget=100)
    make_landscape(services, system="wh", credential="wh-cc", named_credential="wh-api", user="wh-load",
                   permission_set="wh-ps")
    make_landscape(services, system="quiet", credential="q-cc", named_credential="q-api", user="q-user",
                   permission_set="q-ps")
    now = clock.now()
    _decisions(services, now)
    seed_decisions(services, now, named_credential="wh-api", count=1)
    with services.sessions() as s:
        erp, quiet, wh = system_stats(s, now)
    assert (wh.volume_24h, wh.p95_ms) == (1, 10.0)  # one sample: it is its own p95
    assert (quiet.volume_24h, quiet.p95_ms, quiet.success_rate) == (0, None, None)
    assert erp.volume_24h == 20
    assert erp.successes_24h == 18
    assert erp.p95_ms == 190.0  # nearest rank: the 19th of 20 sorted latencies
    assert sum(erp.hourly) == 20
    # Calls with an upstream status since UTC midnight (clock is 09:00): decisions 5 min .. 8h35 ago.
    assert erp.calls_today == 17
    assert erp.budget_used == 0.17


def test_findings_trend_and_open_counts(services, clock):
    from govern.admin.stats import findings_trend, open_findings
    from govern.store.db import session_scope
    from govern.store.tables import Finding

    now = clock.now()
    with session_scope(services.sessions) as s:
        s.add(Finding(external_id="f1", rule_id="R1", severity="high", subject_kind="user", subject="a", title="t",
                      first_seen_at=now - dt.timedelta(days=3)))
        s.add(Finding(external_id="f2", rule_id="R2", severity="high", subject_kind="user", subject="b", title="t",
                      first_seen_at=now - dt.timedelta(days=5), status="resolved",
                      resolved_at=now - dt.timedelta(days=1)))
    with services.sessions() as s:
        assert open_findings(s)["high"] == 1
        labels, series = findings_trend(s, now)
    assert len(labels) == 14
    assert series["high"][-1] == 1  # today: f1 only
    assert series["high"][-3] == 2  # two days ago: both open
    assert series["high"][0] == 0


def test_dashboard_page_draws_inline_svg_and_says_na_for_missing_figures(client, console_users, clock, services):
    make_landscape(services)
    _decisions(services, clock.now())
    sign_in(client, console_users["auditor"])
    html = client.get("/admin/").get_data(as_text=True)
    assert "<svg" in html and "erp" in html
    assert "n/a" in html  # make_landscape declares no daily API budget
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_dashboard_shows_circuit_breaker_states_when_the_proxy_reports_them(client, console_users, clock, services):
    make_landscape(services)
    make_landscape(services, system="wh", credential="wh-cc", named_credential="wh-api", user="wh-load",
                   permission_set="wh-ps")
    services.circuit_breaker_states = lambda: [{"system": "erp", "state": "open"},
                                                         {"system": "wh", "state": "closed"}]
    sign_in(client, console_users["auditor"])
    html = client.get("/admin/").get_data(as_text=True)
    assert 'badge-danger gv-breaker">open<' in html
    assert 'badge-success gv-breaker">closed<' in html


def test_breaker_states_that_cannot_be_read_show_na(client, console_users, clock, services):
    make_landscape(services, daily_api_budget=100)

    def broken():
        raise RuntimeError("cache down")

    services.circuit_breaker_states = broken
    sign_in(client, console_users["auditor"])
    html = client.get("/admin/").get_data(as_text=True)
    assert 'title="no circuit-breaker state is available from this instance">n/a' in html
