"""Idempotency-Key (seed practice 9): a duplicate event has a single upstream effect."""
from __future__ import annotations

import json
import threading

from tests.proxy.conftest import CALLER

JSON = {**CALLER, "Content-Type": "application/json"}


def test_duplicate_event_has_a_single_upstream_effect_and_is_replayed(env):
    body = json.dumps({"order": 1})
    first = env.client.post(env.url("orders"), data=body, headers={**JSON, "Idempotency-Key": "evt-1"})
    second = env.client.post(env.url("orders"), data=body, headers={**JSON, "Idempotency-Key": "evt-1"})
    assert first.status_code == second.status_code == 201
    assert env.upstream.count == 1
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert second.get_data() == first.get_data()
    assert second.headers["Location"] == first.headers["Location"]


def test_same_key_different_payload_is_422(env):
    env.client.post(env.url("orders"), data='{"order": 1}', headers={**JSON, "Idempotency-Key": "evt-2"})
    r = env.client.post(env.url("orders"), data='{"order": 2}', headers={**JSON, "Idempotency-Key": "evt-2"})
    assert r.status_code == 422 and r.get_json()["code"] == "idempotency_key_reused"
    r = env.client.patch(env.url("orders"), data='{"order": 1}', headers={**JSON, "Idempotency-Key": "evt-2"})
    assert r.status_code == 422
    assert env.upstream.count == 1


def test_keys_are_scoped_per_caller(env):
    env.client.post(env.url("orders"), data="{}", headers={**JSON, "Idempotency-Key": "same"})
    other = {**JSON, "Authorization": "Bearer caller-billing-sync", "Idempotency-Key": "same"}
    r = env.client.post(env.url("orders"), data="{}", headers=other)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert env.upstream.count == 2


def test_concurrent_duplicate_while_in_flight_gets_409(env):
    env.upstream.slow_next(1, delay=3)
    results = {}

    def first():
        results["first"] = env.client.post(env.url("orders"), data="{}", headers={**JSON, "Idempotency-Key": "evt-3"})

    t = threading.Thread(target=first)
    t.start()
    # Wait (with a deadline) until the first call reached the upstream, then send the duplicate.
    import time
    deadline = time.monotonic() + 5
    while env.upstream.count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert env.upstream.count == 1
    dup = env.client.post(env.url("orders"), data="{}", headers={**JSON, "Idempotency-Key": "evt-3"})
    assert dup.status_code == 409 and dup.get_json()["code"] == "idempotency_key_in_flight"
    env.upstream.stop()  # releases the slow handler
    t.join(10)
    assert env.upstream.count == 1


def test_failed_call_releases_the_key_so_a_retry_can_run(env):
    env.configure(retry={"attempts": 1})
    env.upstream.fail_next(1, status=500)
    r = env.client.post(env.url("orders"), data="{}", headers={**JSON, "Idempotency-Key": "evt-4"})
    assert r.status_code == 500
    r = env.client.post(env.url("orders"), data="{}", headers={**JSON, "Idempotency-Key": "evt-4"})
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert env.upstream.count == 2


def test_stored_response_holds_no_request_headers_or_credentials(env):
    env.client.post(env.url("orders"), data="{}", headers={**JSON, "Idempotency-Key": "evt-5",
                                                          "X-Correlation-ID": "corr-idem"})
    import sqlalchemy as sa

    from govern.store.tables import SharedState

    with env.services.sessions() as s:  # the shared state without Redis: every stored value
        stored = b"".join(v for v in s.execute(sa.select(SharedState.value)).scalars() if v)
    assert stored  # the record is there
    assert b"upstream-token" not in stored and b"caller-order-sync" not in stored
    assert b"Set-Cookie" not in stored and b"upstream_session" not in stored


def test_a_keyed_call_whose_answer_breaks_off_releases_its_key(env, monkeypatch):
    from govern.broker.proxy.transport import TransportTimeout

    real_send = env.proxy.transport.send

    class BrokenOff:  # headers arrived, then the body timed out
        def __init__(self, inner):
            self.inner, self.status_code, self.headers = inner, inner.status_code, inner.headers

        @property
        def content(self):
            raise TransportTimeout()

        def iter_content(self, chunk=0):
            raise TransportTimeout()
            yield b""  # a generator, as the transport's

        def close(self):
            self.inner.close()

    monkeypatch.setattr(env.proxy.transport, "send", lambda *a, **kw: BrokenOff(real_send(*a, **kw)))
    headers = {**CALLER, "Content-Type": "application/json", "Idempotency-Key": "evt-broken-off"}
    r = env.client.post(env.url("orders"), data=b"{}", headers=headers)
    assert r.status_code == 504 and r.get_json()["code"] == "upstream_timeout"
    monkeypatch.setattr(env.proxy.transport, "send", real_send)
    again = env.client.post(env.url("orders"), data=b"{}", headers=headers)
    assert again.status_code == 201  # not 409 "in flight": the failed first attempt let go of the key
