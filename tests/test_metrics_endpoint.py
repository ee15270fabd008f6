from __future__ import annotations

import datetime as dt

from govern.store.db import session_scope
from govern.store.tables import Finding, SecretRef, utcnow


def test_metrics_reports_state_read_from_the_database(client, services):
    with session_scope(services.sessions) as s:
        s.add(SecretRef(external_id="credential/a/-/client_secret", owner_kind="credential", owner="a",
                        field="client_secret", path="credential/a/-/client_secret",
                        next_due_at=utcnow() - dt.timedelta(days=3)))
        s.add(SecretRef(external_id="credential/b/-/client_secret", owner_kind="credential", owner="b",
                        field="client_secret", path="credential/b/-/client_secret",
                        next_due_at=utcnow() + dt.timedelta(days=3)))
        s.add(Finding(external_id="f1", rule_id="R1", severity="high", subject_kind="integration_user",
                      subject="u1", title="t"))
    body = client.get("/metrics").get_data(as_text=True)
    assert 'govern_secrets_rotation_due{state="due"} 1.0' in body
    assert 'govern_secrets_rotation_due{state="overdue"} 1.0' in body
    assert 'govern_findings_open{severity="high"} 1.0' in body
    assert 'govern_findings_open{severity="critical"} 0.0' in body


def test_counters_appear_after_use(client, services):
    services.metrics.token_requests.labels(system="erp", named_credential="erp-api", outcome="allowed").inc()
    body = client.get("/metrics").get_data(as_text=True)
    assert 'govern_token_requests_total{named_credential="erp-api",outcome="allowed",system="erp"} 1.0' in body
