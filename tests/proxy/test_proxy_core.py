"""The proxy core: forwarding, credential injection by protocol, header allowlists, policy and logging."""
from __future__ import annotations

import base64
import io
import json

from tests.factories import change_landscape, entity
from tests.proxy.conftest import API_KEY, CALLER, use_api_key


def test_get_is_forwarded_with_the_injected_bearer_token_and_never_the_callers(env):
    r = env.client.get(env.url("accounts/42?fields=Name,Id"),
                       headers={**CALLER, "Cookie": "session=caller", "X-Correlation-ID": "corr-123",
                                "Accept": "application/json", "X-Secret-Internal": "no"})
    assert r.status_code == 200, r.get_data(as_text=True)
    got = env.upstream.last()
    assert got.method == "GET" and got.path == "/api/accounts/42" and got.query == "fields=Name,Id"
    assert got.headers["Authorization"] == "Bearer upstream-token-1"
    assert "caller-order-sync" not in json.dumps(got.headers)
    assert "Cookie" not in got.headers and "X-Secret-Internal" not in got.headers
    assert got.headers["X-Correlation-Id"] == "corr-123"
    assert got.headers["Accept"] == "application/json"
    # Response: echoed correlation id, allowlisted headers only, never Set-Cookie.
    assert r.headers["X-Correlation-ID"] == "corr-123"
    assert "Set-Cookie" not in r.headers and "X-Upstream-Internal" not in r.headers
    assert r.headers["ETag"] == '"1"'
    assert r.get_json()["path"] == "/api/accounts/42"


def test_correlation_id_is_created_when_absent_and_forwarded(env):
    r = env.client.get(env.url("x"), headers=CALLER)
    cid = r.headers["X-Correlation-ID"]
    assert cid and env.upstream.last().headers["X-Correlation-Id"] == cid
    assert env.log.records[-1]["correlation_id"] == cid


def test_post_body_and_content_type_are_forwarded_and_location_is_rewritten(env):
    r = env.client.post(env.url("orders"), data=b'{"a": 1}', headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 201
    got = env.upstream.last()
    assert got.body == b'{"a": 1}' and got.headers["Content-Type"] == "application/json"
    assert r.headers["Location"] == "/api/v1/named-credentials/erp-api/proxy/orders/1"


def test_api_key_header_injection(env):
    use_api_key(env)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 200
    got = env.upstream.last()
    assert got.headers["X-Api-Key"] == API_KEY and "Authorization" not in got.headers
    assert API_KEY not in r.get_data(as_text=True)


def test_custom_header_injection(env):
    env.configure(protocol="custom_header", header="X-Tenant-Auth")
    env.put_secret("erp-cc", None, "value", "custom-canary-value")  # the "-" (any principal) reference
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    assert env.upstream.last().headers["X-Tenant-Auth"] == "custom-canary-value"


def test_basic_injection_uses_the_principal_subject(env):
    change_landscape(env.services, lambda doc: entity(doc, "credentials", "erp-cc")["principals"][0].update(
        subject="integration@erp"))
    env.configure(protocol="basic")
    env.put_secret("erp-cc", "default", "password", "basic-canary-pw")
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    auth = env.upstream.last().headers["Authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == "integration@erp:basic-canary-pw"


def test_unauthenticated_caller_gets_401_and_no_upstream_call(env):
    r = env.client.get(env.url("x"), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.mimetype == "application/problem+json"
    assert env.upstream.count == 0


def test_policy_deny_is_403_logged_and_never_forwarded(env):
    env.decider.allow = False
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 403 and r.get_json()["code"] == "access_denied"
    assert env.upstream.count == 0
    record = env.log.records[-1]
    assert record["decision"].allowed is False and record["upstream_status"] is None


def test_decision_gets_salesforce_object_and_fields_and_log_gets_status_and_latency(env):
    env.client.patch(env.url("services/data/v60.0/sobjects/Account/001xx"), data=json.dumps({"Name": "A", "Phone": "1"}),
                     headers={**CALLER, "Content-Type": "application/json"})
    req = env.decider.requests[-1]
    assert (req.action, req.method, req.resource_object, req.fields) == ("proxy", "PATCH", "Account", ("Name", "Phone"))
    env.client.get(env.url("services/data/v60.0/sobjects/Contact/003?fields=Email,LastName"), headers=CALLER)
    req = env.decider.requests[-1]
    assert (req.resource_object, req.fields, req.path) == ("Contact", ("Email", "LastName"),
                                                           "/services/data/v60.0/sobjects/Contact/003")
    record = env.log.records[-1]
    assert record["upstream_status"] == 200 and record["latency_ms"] >= 0
    assert record["request"].resource_object == "Contact"


def test_named_credential_allowlists_are_enforced(env):
    env.configure(methods=["GET"], paths=["/accounts/**"])
    assert env.client.get(env.url("accounts/1"), headers=CALLER).status_code == 200
    r = env.client.delete(env.url("accounts/1"), headers=CALLER)
    assert r.status_code == 403 and r.get_json()["code"] == "named_credential_forbids"
    r = env.client.get(env.url("orders/1"), headers=CALLER)
    assert r.status_code == 403 and r.get_json()["code"] == "named_credential_forbids"
    assert env.upstream.count == 1


def test_unknown_named_credential_is_404(env):
    r = env.client.get(env.url("x", name="nope"), headers=CALLER)
    assert r.status_code == 404 and r.get_json()["code"] == "named_credential_not_found"


def test_body_over_the_limit_is_413_problem_json(env):
    env.configure(max_body=1000)
    r = env.client.post(env.url("orders"), data=b"x" * 1001, headers={**CALLER, "Content-Type": "text/plain"})
    assert r.status_code == 413 and r.get_json()["code"] == "payload_too_large"

    # No Content-Length (chunked): the streamed body is counted as it is read.
    r = env.client.post(env.url("orders"), input_stream=io.BytesIO(b"y" * 2000),
                        environ_overrides={"wsgi.input_terminated": True},
                        headers={**CALLER, "Content-Type": "text/plain"})
    assert r.status_code == 413
    assert env.upstream.count == 0
    assert env.client.post(env.url("orders"), data=b"x" * 1000, headers=CALLER).status_code == 201


def test_degraded_mode_secret_store_down_without_cached_token_is_fast_503(env):
    env.tokens.store_down = True
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 503 and r.get_json()["code"] == "degraded_credential_unavailable"
    assert r.headers["Retry-After"] and env.upstream.count == 0
    # With a cached token, calls keep working while the store is down.
    env.tokens.store_down = False
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200
    env.tokens.store_down = True
    assert env.client.get(env.url("x"), headers=CALLER).status_code == 200


def test_degraded_mode_for_static_secrets(env):
    use_api_key(env)
    env.store.down = True
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 503 and r.get_json()["code"] == "degraded_credential_unavailable"
    assert env.upstream.count == 0


def test_the_proxy_edge_answers_like_every_other_route(env, caplog):
    """Served in front of Flask (govern.api.proxy.ProxyEdge): correlation id, security headers, problem+json."""
    r = env.client.get(env.url("orders"), headers={**CALLER, "X-Correlation-ID": "edge-1"})
    assert r.status_code == 200 and r.headers["X-Correlation-ID"] == "edge-1"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-store"
    made = env.client.get(env.url("orders"), headers=CALLER).headers["X-Correlation-ID"]
    assert len(made) == 32  # none sent: one is made
    denied = env.client.get(env.url("orders"), headers={"X-Correlation-ID": "edge-2"})
    assert denied.status_code == 401 and denied.content_type == "application/problem+json"
    assert denied.get_json()["correlation_id"] == "edge-2" and denied.get_json()["code"] == "unauthorized"
    assert denied.get_json()["instance"] == "/api/v1/named-credentials/erp-api/proxy/orders"
    trace = env.client.open(env.url("orders"), method="TRACE", headers=CALLER)
    assert trace.status_code == 405 and trace.get_json()["code"] == "method_not_allowed"
    assert "GET" in trace.headers["Allow"] and env.upstream.count == 2
    # The queued-call status route next to it is still Flask's.
    assert env.client.get("/api/v1/named-credentials/erp-api/queued/1", headers=CALLER).status_code == 404


def test_an_unexpected_error_is_a_500_problem_without_its_text(env, monkeypatch, caplog):
    def boom(call):
        raise RuntimeError("internal detail caller-order-sync must not leak")

    monkeypatch.setattr(env.proxy, "handle", boom)
    with caplog.at_level("INFO"):
        r = env.client.get(env.url("orders"), headers={**CALLER, "X-Correlation-ID": "edge-500"})
    assert r.status_code == 500 and r.content_type == "application/problem+json"
    assert r.get_json()["code"] == "internal_error" and "internal detail" not in r.get_data(as_text=True)
    errors = [rec for rec in caplog.records if rec.getMessage() == "unhandled error"]
    assert errors and errors[0].exc_type == "RuntimeError"
    line = [rec for rec in caplog.records if rec.getMessage() == "request"][-1]
    assert line.status == 500 and line.outcome == "error" and line.operation == "proxy"

