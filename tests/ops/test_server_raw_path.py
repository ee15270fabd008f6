"""What govern needs from its web server, checked on a real gunicorn with production's settings (issue #20):

- the request target as sent (RAW_URI): the SSRF battery of tests/proxy/test_ssrf.py, which runs through the
  Flask test client, is sent here over a socket exactly as written, and every crafted path is refused before
  any upstream call; percent-encoded paths reach the upstream byte for byte. A server that hands the app only
  the decoded PATH_INFO fails this (granian 2.8.9: bench/README.md, "The server, chosen by measurement");
- a graceful stop: calls in flight when gunicorn gets SIGTERM are answered and their decisions committed.

The landscape comes from tests/factories.make_landscape (as `govern apply`), the key from `govern secrets put`;
the only fake is the upstream (tests/fakes/resource_server.py).
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from tests.factories import make_landscape, put_credential_secret
from tests.fakes.resource_server import ResourceServer
from tests.procs import ROOT, serving
from tests.proxy.test_ssrf import CRAFTED

USER_SECRET = "raw-path-user-client-secret"
PREFIX = "/api/v1/named-credentials/rp-api/proxy/"
pytestmark = [pytest.mark.slow]

# Legitimately percent-encoded paths: the upstream must receive them unchanged.
AS_SENT = ["accounts/42", "names/J%C3%BCrgen", "a%20b", "q/%E2%82%AC", "a/b/"]


def _get(port: int, target: str, headers: dict[str, str]) -> tuple[int, dict]:
    """GET with the request target exactly as given (http.client sends it unchanged)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, (json.loads(body) if body.startswith(b"{") else {})
    finally:
        conn.close()


@pytest.fixture
def upstream():
    server = ResourceServer().start()
    yield server
    server.release_slow()
    server.stop()


@pytest.fixture
def served(tmp_path, settings, services, upstream):
    """govern under `gunicorn -c python:govern.gunicorn_conf` (2 workers), and a caller's govern token."""
    for step in services.init_steps:  # as `govern init` does
        step(services)
    make_landscape(services, system="rp-erp", credential="rp-key", protocol="api_key_header",
                   named_credential="rp-api", url=upstream.url + "/api", user="rp-sync", client_secret=USER_SECRET)
    put_credential_secret(services, "rp-key", "api_key", "raw-path-api-key-value")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERN_REDIS", "GOVERN_WEB_"))}
    env.update(GOVERN_HOME=str(settings.home), GOVERN_DATABASE_URL=settings.database_url,
               GOVERN_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    with serving(env, tmp_path / "gunicorn.log", ["-c", "python:govern.gunicorn_conf", "--workers", "2"]) as server:
        resp = requests.post(server.base + "/oauth/token", auth=("rp-sync", USER_SECRET), timeout=30,
                             data={"grant_type": "client_credentials", "scope": "orders.read"})
        assert resp.status_code == 200, resp.text
        yield server, {"Authorization": f"Bearer {resp.json()['access_token']}"}


def test_crafted_paths_are_judged_as_sent_and_refused_before_any_upstream_call(served, upstream):
    server, auth = served
    port = server.port
    for raw in CRAFTED:
        before = upstream.count
        status, body = _get(port, PREFIX + raw, auth)
        assert (status, body.get("code")) == (400, "path_not_allowed"), (raw, status, body)
        assert upstream.count == before, (raw, upstream.last().path)


def test_encoded_paths_reach_the_upstream_as_sent(served, upstream):
    server, auth = served
    port = server.port
    for raw in AS_SENT:
        status, body = _get(port, PREFIX + raw, auth)
        assert status == 200, (raw, status, body)
        assert upstream.last().path == "/api/" + raw


def test_calls_in_flight_at_sigterm_are_answered_and_their_decisions_committed(served, upstream, services):
    server, auth = served
    port = server.port
    upstream.slow_next(4, delay=1.5)
    ids = [f"rp-term-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    answers: dict[str, object] = {}

    def call(cid: str) -> None:
        try:
            answers[cid] = _get(port, PREFIX + "orders/1", {**auth, "X-Correlation-ID": cid})[0]
        except OSError as exc:
            answers[cid] = repr(exc)

    before = upstream.count
    threads = [threading.Thread(target=call, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while upstream.count < before + len(ids):  # every call is waiting on the upstream
        assert time.monotonic() < deadline, "the calls did not reach the upstream"
        time.sleep(0.02)
    server.signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    assert server.proc.wait(60) == 0
    assert answers == {cid: 200 for cid in ids}
    with services.engine.connect() as conn:
        recorded = set(conn.execute(sa.text("SELECT correlation_id FROM decision WHERE correlation_id IN :ids")
                                    .bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).scalars())
    assert recorded == set(ids)
