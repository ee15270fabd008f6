"""Right-sizing against the real pieces: examples/governance.yaml applied with `govern apply`, decisions
written through the real hash-chained DecisionLog, the recommendation applied with `govern apply`, and
the real PolicyDecider replaying the window afterwards."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import yaml

from govern.domain.access import AccessRequest, Caller
from govern.store.db import session_scope
from govern.store.tables import IntegrationUser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "governance.yaml"
SOBJ = "/services/data/v61.0/sobjects"

# (user, token scopes, source ip, named credential, method, path, object, api type)
USED = [
    ("erp-order-sync", ("api",), "10.20.1.5", "salesforce-rest", "GET", f"{SOBJ}/Order/801A", "Order", "REST"),
    ("erp-order-sync", ("api",), "10.20.1.5", "salesforce-rest", "PATCH", f"{SOBJ}/Order/801B", "Order", "REST"),
    ("finance-reconciliation", ("payouts.read", "charges.read", "invoice.read"), "10.9.9.9", "stripe-api", "GET",
     "/v1/payouts/po_1", None, "REST"),
    ("finance-reconciliation", ("payouts.read", "charges.read", "invoice.read"), "10.9.9.9", "stripe-api", "GET",
     "/v1/charges/ch_1", None, "REST"),
    ("checkout-payments", ("charges.read", "refunds.write"), "10.30.1.7", "stripe-api", "POST", "/v1/refunds/re_1",
     None, "REST"),
    ("checkout-payments", ("charges.read", "refunds.write"), "10.30.1.7", "stripe-api", "GET", "/v1/charges/ch_2",
     None, "REST"),
    # a token request names no API type: the decider takes the named credential's (Bulk here)
    ("warehouse-loader", ("api",), "10.40.8.3", "salesforce-bulk", None, None, None, None),
]


def _request(user, scopes, ip, nc, method, path, obj, api):
    return AccessRequest(caller=Caller(integration_user=user, scopes=scopes, source_ip=ip),
                         action="proxy" if method else "token",
                         named_credential=nc, method=method, path=path, resource_object=obj, api_type=api)


def apply_example_and_log(services, runner, days_old: int = 120) -> list[AccessRequest]:
    """Apply the example, back-date its users, and log the USED requests (as decided by the real decider)."""
    result = runner.invoke(["apply", "-f", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    with session_scope(services.sessions) as s:
        for u in s.query(IntegrationUser):
            u.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_old)
    services.landscape.invalidate()
    requests = [_request(*row) for row in USED]
    for i, req in enumerate(requests):
        decision = services.decider.decide(req)
        assert decision.allowed, (req, decision)
        for day in range(3):  # the same calls on several days of the window
            services.decision_log.append(req, decision,
                                         at=dt.datetime.now(dt.UTC) - dt.timedelta(days=day + 1, minutes=i))
    # the log began before the window (a record of no user): absence of use in the window means something
    services.decision_log.append(None, None, at=dt.datetime.now(dt.UTC) - dt.timedelta(days=45),
                                 correlation_id="log-began", allowed=False, rules=["deny:default"])
    assert services.decision_log.flush()
    return requests


def test_recommendation_is_accepted_by_apply_and_the_decider_agrees(services, runner, tmp_path):
    requests = apply_example_and_log(services, runner)
    before = {r: services.decider.decide(r).allowed for r in requests}
    removed = _request("finance-reconciliation", ("invoice.read",), "10.9.9.9", "erp-odata", "GET",
                       "/sap/api_billingdocument/1", None, "REST")
    assert services.decider.decide(removed).allowed  # granted (erp-invoice-reader) but never used

    out, rec = tmp_path / "r.json", tmp_path / "out.yaml"
    result = runner.invoke(["audit", "--out", str(out), "--recommend", str(rec)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    judged = {r["user"]: r for r in report["rightsizing"]}
    assert judged["finance-reconciliation"]["judged"]
    assert judged["finance-reconciliation"]["proof"]["would_deny"] == 0
    doc = yaml.safe_load(rec.read_text())
    users = {u["id"] for u in doc["integration_users"]}
    assert {"erp-order-sync", "finance-reconciliation"} <= users
    assert "checkout-payments" not in users  # used everything it holds: nothing to right-size
    bulk = next(ps for ps in doc["permission_sets"] if ps["id"] == "crm-bulk-export-rightsized")
    assert bulk["api_types"] == ["Bulk"] and bulk["scopes"] == ["api"]
    order = next(ps for ps in doc["permission_sets"] if ps["id"] == "order-writer-rightsized")
    # GET and PATCH on Order were used: read and edit stay, create goes, OrderItem goes
    assert order["grants"][0]["methods"] == ["GET", "PATCH"]
    assert order["grants"][0]["objects"] == {"Order": {"read": True, "edit": True,
                                                       "fields": {"Status": "edit", "TotalAmount": "read"}}}

    dry = runner.invoke(["apply", "-f", str(rec), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    applied = runner.invoke(["apply", "-f", str(rec)])
    assert applied.exit_code == 0, applied.output
    # idempotent: the same file again changes nothing
    again = runner.invoke(["apply", "-f", str(rec), "--dry-run"])
    assert again.exit_code == 0 and "0 to create, 0 to update" in again.output, again.output

    # the apply ran in the CLI's own process state; re-read the landscape now rather than after the
    # decider's re-check interval
    services.landscape.invalidate()
    for r, was_allowed in before.items():
        d = services.decider.decide(r)
        assert d.allowed == was_allowed, (r, d)
    d = services.decider.decide(removed)
    assert not d.allowed and d.rules == ("deny:default",)
    # an unused method of a kept grant is gone too (order-writer granted POST on Order; only GET/PATCH used)
    post = _request("erp-order-sync", ("api",), "10.20.1.5", "salesforce-rest", "POST", f"{SOBJ}/Order", "Order",
                    "REST")
    assert not services.decider.decide(post).allowed

    # round trip: the applied landscape exports to a document that plans no changes
    exported = tmp_path / "export.yaml"
    result = runner.invoke(["export", "-o", str(exported)])
    assert result.exit_code == 0, result.output
    back = runner.invoke(["apply", "-f", str(exported), "--dry-run"])
    assert back.exit_code == 0 and "0 to create, 0 to update" in back.output, back.output


def test_replay_follows_the_deciders_steps():
    """The audit's replay (rightsizing.permits) applies the decider's rules: a token request names no
    operation, object permissions follow the method, requested scopes must lie within the permitting sets."""
    from govern.audit.model import RequestPattern
    from govern.audit.rightsizing import permits

    sets = [{"id": "ps", "scopes": ["api"], "api_types": ["REST"], "grants": [
        {"named_credential": "sf", "methods": ["GET", "PATCH"], "paths": ["/services/data/*/sobjects/Order/**"],
         "objects": {"Order": {"read": True, "edit": True}}}]}]

    def ok(method, path, scopes=(), user_scopes=("api",), api="REST", nc="sf"):
        return permits(sets, list(user_scopes), RequestPattern(nc, method, path, None, api, tuple(scopes), 1))

    assert ok(None, None, scopes=("api",))  # a token request for the named credential
    assert not ok(None, None, scopes=("api",), user_scopes=())  # ... outside the user's scopes
    assert not ok(None, None, nc="other")
    assert ok("GET", f"{SOBJ}/Order/1") and ok("PATCH", f"{SOBJ}/Order/1")
    assert not ok("DELETE", f"{SOBJ}/Order/1")  # method
    assert not ok("GET", f"{SOBJ}/Account/1")  # path
    assert not ok("GET", f"{SOBJ}/Order/1", api="SOAP")  # API type
    sets[0]["grants"][0]["methods"] = []  # any method, but the object permissions still decide
    assert not ok("DELETE", f"{SOBJ}/Order/1") and ok("PATCH", f"{SOBJ}/Order/1")
