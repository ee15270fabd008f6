"""A canary credential never reaches logs, responses, the decision log or the queue tables."""
from __future__ import annotations

import json
import logging

from sqlmodel import select

from govern.store.proxy_tables import QueuedCall
from tests.proxy.conftest import API_KEY, CALLER, use_api_key


def test_canary_api_key_and_tokens_never_leak(env, caplog):
    caplog.set_level(logging.DEBUG)
    use_api_key(env)
    bodies = []
    bodies.append(env.client.get(env.url("x"), headers=CALLER))
    env.upstream.fail_next(3, status=503)
    bodies.append(env.client.get(env.url("x"), headers=CALLER))
    env.store.down = True
    bodies.append(env.client.get(env.url("x"), headers=CALLER))
    env.store.down = False
    env.configure(maintenance_windows=[{"day": "tue", "start": "11:00", "end": "13:00"}], during_maintenance="queue")
    bodies.append(env.client.post(env.url("orders"), data="{}", headers={**CALLER, "Content-Type": "application/json"}))
    env.configure(protocol="oauth2_client_credentials", token_url="http://127.0.0.1:9/token", header=None,
                  maintenance_windows=None)
    env.upstream.unauthorized_next(1)
    bodies.append(env.client.get(env.url("x"), headers=CALLER))
    assert env.upstream.received[0].headers["X-Api-Key"] == API_KEY  # the canary was really used

    leaks = [API_KEY, "upstream-token-"]
    text = caplog.text + "".join(r.get_data(as_text=True) + json.dumps(dict(r.headers)) for r in bodies)
    text += repr(env.log.records)
    with env.services.sessions() as s:
        text += "".join(json.dumps(q.model_dump(mode="json", exclude={"body"})) + q.body.decode()
                        for q in s.exec(select(QueuedCall)).all())
    for canary in leaks:
        assert canary not in text


def test_a_stored_key_with_a_line_break_is_never_sent_and_never_echoed(env, caplog):
    """A secret that would split the upstream request (header injection) is refused before any byte is sent."""
    caplog.set_level(logging.DEBUG)
    env.configure(protocol="api_key_header", header="X-Api-Key")
    canary = "canary-split-key\r\nX-Injected: yes"
    env.put_secret("erp-cc", "default", "api_key", canary)
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 502 and r.get_json()["code"] == "upstream_request_unsafe"
    assert env.upstream.count == 0
    text = caplog.text + r.get_data(as_text=True) + json.dumps(dict(r.headers)) + repr(env.log.records)
    assert "canary-split-key" not in text and "X-Injected" not in text
