"""Activity rows for console tests and screenshots: decisions, findings, secret references and rotation runs."""
from __future__ import annotations

import datetime as dt


def seed_decisions(services, now, *, named_credential="erp-api", count=20):
    from govern.store.db import session_scope
    from govern.store.tables import Decision

    with session_scope(services.sessions) as s:
        # `count` decisions 30 min apart: one denied (i=3), one upstream 502 (i=7); latencies 10, 20, ... ms.
        for i in range(count):
            s.add(Decision(at=now - dt.timedelta(minutes=5 + i * 30), correlation_id=f"{named_credential}-c{i}",
                           integration_user="order-sync", action="call", named_credential=named_credential,
                           allowed=(i != 3), upstream_status=502 if i == 7 else (None if i == 3 else 200),
                           outcome="deny" if i == 3 else "error" if i == 7 else "allow",
                           latency_ms=float((i + 1) * 10), prev_hash=f"{named_credential}{i}",
                           hash=f"{named_credential}-h{i}"))


def seed_findings_and_rotations(services, now):
    from govern.store.db import session_scope
    from govern.store.tables import Finding, RotationRun, SecretRef

    with session_scope(services.sessions) as s:
        for i, (sev, age, resolved) in enumerate([("high", 10, None), ("medium", 8, 2), ("medium", 6, None),
                                                   ("low", 12, None), ("critical", 3, 1), ("high", 2, None)]):
            s.add(Finding(external_id=f"f{i}", rule_id=f"GOV-{i:03d}", severity=sev, subject_kind="integration_user",
                          subject="order-sync", title=f"example finding {i}", first_seen_at=now - dt.timedelta(days=age),
                          status="resolved" if resolved else "open",
                          resolved_at=now - dt.timedelta(days=resolved) if resolved else None))
        ref = SecretRef(external_id="credential/erp-cc/principal/default/client_secret", owner_kind="credential",
                        owner="erp-cc", principal="default", field="client_secret", path="credential/erp-cc/default",
                        current_version=3, set_at=now - dt.timedelta(days=80), schedule="90d",
                        next_due_at=now + dt.timedelta(days=3))
        s.add(ref)
        s.flush()
        s.add(RotationRun(secret_ref_id=ref.id, rotator="static", state="parked", attempts=3,
                          error="upstream refused the new secret", started_at=now - dt.timedelta(days=1)))
