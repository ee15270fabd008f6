"""The token route's two doors answer alike: a JSON request is served by TokenRouteEdge in front of Flask,
a form body (or a query string) by the Flask view; checks, errors, headers and the decision log match."""
from __future__ import annotations

import json

import pytest

from tests.broker.conftest import UPSTREAM_TOKEN, access_token, decisions

ROUTE = "/api/v1/named-credentials/erp-api/token"


def _post(client, token, *, path=ROUTE, correlation="corr-edge-1", **kw):
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": correlation, **kw.pop("headers", {})}
    return client.post(path, headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}, **kw)


@pytest.mark.parametrize("shape", ["json", "json+charset", "form", "json-with-query"])
def test_every_shape_gives_the_token_headers_and_one_decision(broker_client, broker_services, landscape, shape):
    token = access_token(broker_client)
    kw = {"form": {"data": {"scope": "orders.read"}},
          "json": {"json": {"scope": ["orders.read"]}},
          "json+charset": {"data": json.dumps({"scope": "orders.read"}),
                           "headers": {"Content-Type": "application/json; charset=utf-8"}},
          "json-with-query": {"json": {"scope": "orders.read"}, "path": ROUTE + "?x=1"}}[shape]
    resp = _post(broker_client, token, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    assert resp.get_json()["access_token"] == UPSTREAM_TOKEN and resp.get_json()["scope"] == "orders.read"
    assert resp.headers["X-Correlation-ID"] == "corr-edge-1"
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Cache-Control"] == "no-store"
    [rec] = decisions(broker_services)
    assert rec.allowed and rec.correlation_id == "corr-edge-1" and rec.scopes_requested == ["orders.read"]


@pytest.mark.parametrize("body, status, code, locations", [
    ('{"scope": "orders.read\\u0000"}', 400, "invalid_parameter", ["body"]),
    ('{"scope": "orders.read"', 422, "validation_failed", ["body"]),
    ('["orders.read"]', 422, "validation_failed", ["body"]),
    ('{"scope": 7}', 422, "validation_failed", ["body.scope.str", "body.scope.list[str]"]),
    ('{"rejected_token": 7}', 422, "validation_failed", ["body.rejected_token"]),
    ("[" * 65 + "]" * 65, 400, "json_too_deep", None),
])
def test_bad_json_is_a_4xx_problem_with_its_code_and_no_decision(broker_client, broker_services, landscape,
                                                                  body, status, code, locations):
    """The edge answers as the Flask view does (a query string sends the same body to the view)."""
    token = access_token(broker_client)
    for path in (ROUTE, ROUTE + "?via=flask"):
        resp = _post(broker_client, token, path=path, data=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == status and resp.mimetype == "application/problem+json", path
        problem = resp.get_json()
        assert problem["code"] == code and problem["correlation_id"] == "corr-edge-1", path
        assert problem["instance"] == ROUTE
        if locations:
            assert [e["location"] for e in problem["errors"]] == locations, path
        assert resp.headers["X-Correlation-ID"] == "corr-edge-1"
    assert decisions(broker_services) == []


def test_a_caller_without_a_token_gets_401_problem_json_from_the_edge(broker_client, broker_services, landscape):
    resp = broker_client.post(ROUTE, json={"scope": "orders.read"}, headers={"Authorization": "Bearer a.b.c"})
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == "unauthorized"
    assert resp.headers["X-Correlation-ID"] == resp.get_json()["correlation_id"]
    assert decisions(broker_services) == []


def test_other_methods_still_reach_flask(broker_client, landscape):
    resp = broker_client.get(ROUTE)
    assert resp.status_code == 405 and resp.get_json()["code"] == "method_not_allowed"
