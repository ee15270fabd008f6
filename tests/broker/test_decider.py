"""The PolicyDecider on proxy-shaped requests: methods, path patterns, Salesforce objects and fields."""
from __future__ import annotations

from govern.domain.access import AccessRequest, Caller
from tests.factories import change_landscape, entity, make_landscape

SOBJ = "/services/data/v60.0/sobjects"


def _request(method, path, fields=(), scopes=(), ip="127.0.0.1"):
    caller = Caller(integration_user="order-sync", scopes=("orders.read", "orders.write"), source_ip=ip)
    return AccessRequest(caller=caller, action="proxy", named_credential="erp-api", method=method, path=path,
                         fields=tuple(fields), scopes=tuple(scopes))


def test_operations_objects_and_fields(broker_services):
    make_landscape(broker_services, methods=("GET", "PATCH"), paths=("/services/data/*/sobjects/Order/**",))
    change_landscape(broker_services, lambda doc: entity(doc, "permission_sets", "order-sync-ps")["grants"][0].update(
        objects={"Order": {"read": True, "edit": True, "fields": {"Status": "edit", "Amount": "read"}}}))
    decide = broker_services.decider.decide
    ok = decide(_request("GET", f"{SOBJ}/Order/801", fields=["Status", "Amount"]))
    assert ok.allowed and ok.rules == ("permit:order-sync-ps",) and ok.principal == "default"
    assert decide(_request("PATCH", f"{SOBJ}/Order/801", fields=["Status"])).allowed
    for req in (_request("PATCH", f"{SOBJ}/Order/801", fields=["Amount"]),  # read-only field
                _request("DELETE", f"{SOBJ}/Order/801"),  # method not granted
                _request("GET", f"{SOBJ}/Account/001")):  # path outside the patterns
        d = decide(req)
        assert not d.allowed and d.rules == ("deny:operation_not_granted",)
    d = decide(_request("GET", f"{SOBJ}/Order/801", ip="192.0.2.1"))
    assert d.rules == ("deny:ip_outside_ranges",)


def test_api_type_must_be_granted(broker_services):
    make_landscape(broker_services, api_types=("SOAP",))
    d = broker_services.decider.decide(_request("GET", "/x"))
    assert not d.allowed and d.rules == ("deny:api_type_not_granted",)


def test_entities_and_policies_are_built_once_per_landscape(broker_services):
    make_landscape(broker_services)
    decider = broker_services.decider
    decider.decide(_request("GET", "/x"))
    snap = broker_services.landscape.current()
    built = dict(snap.derived)
    guardrails = decider.guardrails
    for _ in range(5):
        decider.decide(_request("GET", "/x"))
    assert broker_services.landscape.current() is snap
    assert dict(snap.derived) == built and decider.guardrails is guardrails
