"""Issue #9: structured JSON logs. Every line of a token request and of a proxied call carries the correlation
id, the operation and the target system; the one request line adds the source system, the outcome and the upstream
status.
No secret or token value appears anywhere."""
from __future__ import annotations

import io
import json
import logging

import pytest

from govern.logs import JsonFormatter
from tests.broker.conftest import access_token, ask
from tests.factories import change_landscape, entity


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def _lines(stream, correlation_id):
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("correlation_id") == correlation_id]


def test_token_and_proxy_lines_carry_the_operation_fields_and_no_secret(ops_env, captured):
    env = ops_env

    def add_source_system(document):
        document["systems"].append({"id": "webshop", "contract": {"owner": "shop@example.com"}})
        entity(document, "integration_users", env.names["user"])["source_system"] = "webshop"

    change_landscape(env.services, add_source_system)
    token = access_token(env.client, user=env.names["user"], secret=env.names["client_secret"])

    issued = ask(env.client, token, headers={"X-Correlation-ID": "ops-log-token-1"})
    assert issued.status_code == 200
    upstream_token = issued.get_json()["access_token"]
    proxied = env.client.get("/api/v1/named-credentials/erp-api/proxy/orders",
                             headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": "ops-log-proxy-1"},
                             environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert proxied.status_code == 200
    denied = env.client.post("/api/v1/named-credentials/erp-api/proxy/orders",
                             headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": "ops-log-proxy-2"},
                             environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert denied.status_code == 403

    for cid, operation, outcome in (("ops-log-token-1", "token", "allowed"), ("ops-log-proxy-1", "proxy", "success"),
                                    ("ops-log-proxy-2", "proxy", "denied")):
        lines = _lines(captured, cid)
        assert lines, f"no log line for {cid}"
        for line in lines:
            assert line["operation"] == operation and line["target_system"] == "erp", line
        ends = [line for line in lines if line["msg"] == "request"]
        assert len(ends) == 1, lines  # one summary line per request, not one per layer
        assert ends[0]["source_system"] == "webshop" and ends[0]["outcome"] == outcome, ends[0]
        assert isinstance(ends[0]["duration_ms"], float) and ends[0]["status"] in (200, 403), ends[0]
        if operation == "proxy" and outcome == "success":
            assert ends[0]["upstream_status"] == 200, ends[0]
    # The upstream token call of the token request is on record under the request's correlation id.
    assert any(line["msg"] == "upstream token call" and line["outcome"] == "success"
               for line in _lines(captured, "ops-log-token-1"))

    text = captured.getvalue()
    for value in (env.names["client_secret"], token, upstream_token, "upstream-client-secret"):
        assert value not in text


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abcdefgh12345678", "basic dXNlcjpwYXNzd29yZA==", "token eyJhbGciOi.eyJzdWIiOi.c2ln",
    "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----", "https://x/cb?client_secret=s3cr3t&x=1",
    "BEARER ABCDEFGH12345678",
])
def test_redaction_still_catches_every_pattern_behind_the_quick_check(text):
    from govern.logs import REDACTED, redact, redact_text

    assert REDACTED in redact_text(text)
    assert REDACTED in redact({"note": text})["note"]


def test_text_without_anything_secret_looking_is_kept_as_it_is():
    from govern.logs import redact

    line = {"path": "/api/v1/named-credentials/erp-api/proxy/orders", "status": 200, "duration_ms": 1.5,
            "ok": True, "missing": None, "items": ["a", 1], "password": "x", "secret_ref": "erp/key"}
    assert redact(line) == {**line, "password": "[REDACTED]"}
