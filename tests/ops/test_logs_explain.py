"""Logs that explain: a 500 leaves its message and traceback (redacted) in the server log and nothing of it in
the answer; an unreachable upstream token endpoint logs its cause; no terminal colour codes in JSON lines."""
from __future__ import annotations

import io
import json
import logging

import pytest

from govern.logs import JsonFormatter

CANARY_TOKEN = "Bearer abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    root.removeHandler(handler)


def test_a_500_logs_its_message_and_traceback_redacted_and_answers_only_the_correlation_id(app, log_lines):
    def explode():
        raise RuntimeError(f"ledger row 42 has no owner; header was {CANARY_TOKEN}")

    app.add_url_rule("/_test/explode", "explode", explode)
    resp = app.test_client().get("/_test/explode")
    assert resp.status_code == 500
    body = resp.get_data(as_text=True)
    assert "ledger row" not in body and "Traceback" not in body and "abcdefghijklmnop" not in body
    problem = resp.get_json()
    assert problem["code"] == "internal_error" and problem["correlation_id"]
    [line] = [e for e in log_lines() if e["msg"] == "unhandled error"]
    assert line["level"] == "error" and line["exc_type"] == "RuntimeError"
    assert "ledger row 42 has no owner" in line["exc_message"]
    assert "Traceback" in line["traceback"] and "explode" in line["traceback"]
    assert line["correlation_id"] == problem["correlation_id"]
    text = json.dumps(line)
    assert "abcdefghijklmnop" not in text and "[REDACTED]" in line["exc_message"]


def test_an_unreachable_token_endpoint_logs_its_cause(log_lines):
    import socket

    from govern.broker.upstream.http import RequestsTokenHttp
    from govern.errors import UpstreamUnavailable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UpstreamUnavailable):
        RequestsTokenHttp().post_form(f"http://127.0.0.1:{port}/oauth/token?x=1",
                                      {"grant_type": "client_credentials", "client_secret": "never-logged-77"},
                                      basic_auth=("c", "never-logged-78"), timeout=5)
    [line] = [e for e in log_lines() if e["msg"].startswith("upstream token endpoint")]
    assert line["cause"] == "ConnectionError" and "refused" in line["cause_detail"].lower()
    assert line["url"] == f"http://127.0.0.1:{port}/oauth/token"
    assert "never-logged" not in json.dumps(line)


def test_terminal_colour_codes_never_reach_a_json_line(log_lines):
    logging.getLogger("werkzeug").warning('\x1b[31m\x1b[1m"GET / HTTP/1.1" 500 -\x1b[0m')
    [line] = [e for e in log_lines() if "GET / HTTP/1.1" in e["msg"]]
    assert "\x1b" not in line["msg"] and line["msg"] == '"GET / HTTP/1.1" 500 -'
