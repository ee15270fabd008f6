"""Issue #9: structured JSON logs. Every line of a token request and of a proxied call carries the correlation
id, the operation and the target system; the summary and request lines add the source system and the outcome.
No secret or token value appears anywhere."""
from __future__ import annotations

import io
import json
import logging

import pytest
import sqlalchemy as sa

from govern.logs import JsonFormatter
from govern.store.db import session_scope
from govern.store.tables import IntegrationUser, System
from tests.broker.conftest import access_token, ask


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
    with session_scope(env.services.sessions) as s:
        shop = System(external_id="webshop", name="webshop", owner="shop@example.com")
        s.add(shop)
        s.flush()
        user = s.execute(sa.select(IntegrationUser)
                         .where(IntegrationUser.external_id == env.names["user"])).scalar_one()
        user.source_system_id = shop.id
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
        ends = [line for line in lines if line["msg"] in ("request", f"{operation} {outcome}")]
        assert len(ends) == 2, lines
        for line in ends:
            assert line["source_system"] == "webshop" and line["outcome"] == outcome, line
    # The upstream token call of the token request is on record under the request's correlation id.
    assert any(line["msg"] == "upstream token call" and line["outcome"] == "success"
               for line in _lines(captured, "ops-log-token-1"))

    text = captured.getvalue()
    for value in (env.names["client_secret"], token, upstream_token, "upstream-client-secret"):
        assert value not in text
