"""Issue #9 "Done when": after a scripted scenario (successes, denials, an upstream outage, a rotation),
/metrics reports exactly what happened: counters by outcome, histogram counts, the breaker state, and the
state read at scrape time."""
from __future__ import annotations

import re
import uuid

from govern.rotation.wiring import rotation_service
from tests.broker.conftest import access_token, ask
from tests.rotation.conftest import add_secret


def _value(body: str, name: str, **labels: str) -> float:
    """The value of one sample; its labels must match exactly (Prometheus sorts them by name)."""
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}{{{re.escape(rendered)}}} (\S+)$" if labels else rf"^{re.escape(name)} (\S+)$"
    found = re.findall(pattern, body, re.M)
    assert found, f"no sample {name}{{{rendered}}} in /metrics"
    return float(found[0])


def _proxy(env, token, method="GET", path="orders"):
    return env.client.open(f"/api/v1/named-credentials/erp-api/proxy/{path}", method=method,
                           headers={"Authorization": f"Bearer {token}"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})


def test_metrics_match_the_scenario(ops_env):
    env = ops_env
    nc = {"system": "erp", "named_credential": "erp-api"}
    token = access_token(env.client, user=env.names["user"], secret=env.names["client_secret"])

    # Tokens: two allowed (the second from govern's cache), one denied (a scope no permission set grants),
    # one asked for a named credential that does not exist (counted as unknown, never under its name).
    assert ask(env.client, token).status_code == 200
    assert ask(env.client, token).status_code == 200
    assert ask(env.client, token, scope="orders.write").status_code == 403
    invented = "nope-" + uuid.uuid4().hex
    assert ask(env.client, token, name=invented).status_code == 404
    # The upstream token endpoint fails while the cached token is gone: one failed token request.
    env.services.upstream_tokens.invalidate("erp-api", "default", ("orders.read",))
    env.upstream.inject("5xx", grant="client_credentials", times=1)
    failed = ask(env.client, token)
    assert failed.status_code == 503 and failed.mimetype == "application/problem+json"

    # Proxied calls: one success, one denial (POST is not allowed), then the resource server fails twice,
    # which opens the breaker (threshold 2), and the next call is refused without reaching it.
    assert _proxy(env, token).status_code == 200
    assert _proxy(env, token, method="POST").status_code == 403
    env.resources.fail_next(2, status=503)
    assert _proxy(env, token).status_code == 503
    assert _proxy(env, token).status_code == 503
    reached = env.resources.count
    refused = _proxy(env, token)
    assert refused.status_code == 503 and refused.get_json()["code"] == "circuit_open"
    assert env.resources.count == reached

    # A rotation: one static secret, due, rotated by the rotation service to the end.
    add_secret(env.services, "ops-static")
    assert [o.status for o in rotation_service(env.services, worker_id="ops-test").tick()] == ["finished"]

    assert env.services.decision_log.flush()
    body = env.scrape()
    assert _value(body, "govern_token_requests_total", **nc, outcome="allowed") == 2
    assert _value(body, "govern_token_requests_total", **nc, outcome="denied") == 1
    assert _value(body, "govern_token_requests_total", **nc, outcome="error") == 1
    assert _value(body, "govern_token_requests_total", system="unknown", named_credential="unknown",
                  outcome="not_found") == 1
    assert invented not in body
    assert _value(body, "govern_token_request_seconds_count", **nc) == 4

    assert _value(body, "govern_proxy_requests_total", **nc, outcome="success") == 1
    assert _value(body, "govern_proxy_requests_total", **nc, outcome="denied") == 1
    assert _value(body, "govern_proxy_requests_total", **nc, outcome="upstream_error") == 2
    assert _value(body, "govern_proxy_requests_total", **nc, outcome="circuit_open") == 1
    assert _value(body, "govern_proxy_request_seconds_count", **nc) == 5
    assert _value(body, "govern_circuit_breaker_state", system="erp") == 2

    # Every call govern made to the upstream token endpoint is counted, the failed one as an error.
    calls = env.upstream.count("client_credentials")
    assert _value(body, "govern_upstream_refresh_total", system="erp", credential="erp-cc", outcome="error") == 1
    assert _value(body, "govern_upstream_refresh_total", system="erp", credential="erp-cc",
                  outcome="success") == calls - 1

    assert _value(body, "govern_rotations_total", rotator="static", outcome="finished") == 1
    assert _value(body, "govern_dlq_depth") == 0
    assert _value(body, "govern_decision_log_queue_depth") == 0
    assert _value(body, "govern_decision_log_lag_seconds") == 0
    assert _value(body, "govern_ready_check", check="database") == 1
