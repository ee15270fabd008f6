"""The worker's alert conditions: the pure evaluator and its de-duplication, and check_alerts posting
HMAC-signed webhooks (govern/notify.py) to a local receiver."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading

import pytest
from sqlmodel import select

from govern.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookNotifier
from govern.ops.alerts import Condition, Readings, Thresholds, check_alerts, decide, evaluate
from govern.store.db import session_scope
from govern.store.tables import RotationRun, SecretRef, utcnow
from tests.factories import make_landscape, put_credential_secret, update_entity

WEBHOOK_SECRET = "webhook-signing-secret-for-tests"


def keys(conditions):
    return [c.key for c in conditions]


def test_nothing_holds_in_a_healthy_state():
    assert evaluate(Readings(calls={"erp": (100, 20)}, breakers={"erp": "closed", "crm": "half_open"},
                             dlq_depth=10, budgets={"erp": 0.79}, ready={"database": True})) == []


def test_each_condition_at_its_threshold():
    readings = Readings(calls={"erp": (100, 21), "crm": (9, 9)}, breakers={"erp": "open"}, dlq_depth=11,
                        budgets={"erp": 0.8, "crm": 0.5}, parked_rotations=("db-password",), overdue_secrets=2,
                        ready={"secret_store": False, "database": True})
    assert keys(evaluate(readings)) == ["failure_rate:erp", "circuit_open:erp", "dlq_depth", "api_budget:erp",
                                        "rotation_parked:db-password", "secrets_overdue", "not_ready:secret_store"]
    # crm's 9 of 9 failures are below min_calls: no spike from a trickle
    assert keys(evaluate(readings, Thresholds(min_calls=5)))[:2] == ["failure_rate:crm", "failure_rate:erp"]


def test_a_condition_is_sent_once_until_it_clears():
    spike = Condition("dlq_depth", "alert.dlq_depth", {})
    fresh, cleared = decide([spike], set())
    assert fresh == [spike] and cleared == []
    assert decide([spike], {"dlq_depth"}) == ([], [])
    assert decide([], {"dlq_depth"}) == ([], ["dlq_depth"])
    assert decide([spike], set()) == ([spike], [])  # after clearing, it alerts again


class Receiver:
    """A local webhook endpoint that keeps what it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self):
        out = []
        for headers, body in self.received:
            signed = headers[TIMESTAMP_HEADER].encode() + b"." + body
            expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected), "bad signature"
            out.append(json.loads(body))
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _scheduled_secret(services) -> tuple[SecretRef, dt.datetime]:
    """A credential secret on a 30-day schedule (applied, then `govern secrets put`), and a time 3 days past due."""
    make_landscape(services, client_secret=None)
    update_entity(services, "credentials", "erp-cc", rotation={"every": "30d"})
    put_credential_secret(services, "erp-cc", "client_secret", "upstream-secret-v1")
    with services.sessions() as s:
        ref = s.exec(select(SecretRef)).one()
    due = ref.next_due_at if ref.next_due_at.tzinfo else ref.next_due_at.replace(tzinfo=dt.UTC)
    return ref, due + dt.timedelta(days=3)


def test_check_alerts_posts_signed_webhooks_once_per_condition(services, receiver):
    services.notifier = WebhookNotifier(receiver.url, WEBHOOK_SECRET)
    ref, now = _scheduled_secret(services)
    ref_id = ref.id
    with session_scope(services.sessions) as s:  # rotation state: a run the runner parked after its retries
        s.add(RotationRun(secret_ref_id=ref_id, rotator=ref.rotator, state="parked", steps=[]))

    report = check_alerts(services, now)
    assert report == {"sent": [f"rotation_parked:{ref.external_id}", "secrets_overdue"], "resolved": [],
                      "failed": []}
    events = receiver.events()
    assert [e["event"] for e in events] == ["alert.rotation_failed", "alert.secrets_overdue"]
    assert events[1]["payload"]["count"] == 1 and events[1]["payload"]["alert"] == "secrets_overdue"

    # Still holding: nothing new is sent.
    assert check_alerts(services, now) == {"sent": [], "resolved": [], "failed": []}
    assert len(receiver.received) == 2

    # The secret is rotated (no longer overdue): one resolution, the parked run still holds. The runner
    # moves the due date when a rotation finishes (govern.rotation.runner._promote): rotation state.
    with session_scope(services.sessions) as s:
        s.get(SecretRef, ref_id).next_due_at = now + dt.timedelta(days=90)
    assert check_alerts(services, now) == {"sent": [], "resolved": ["secrets_overdue"], "failed": []}
    assert receiver.events()[-1]["event"] == "alert.resolved"
    assert receiver.events()[-1]["payload"]["alert"] == "secrets_overdue"


def test_a_failed_send_is_retried_on_the_next_check(services, receiver):
    class Broken:
        def notify(self, event, payload):
            raise ConnectionError("webhook down")

    services.notifier = Broken()
    _ref, now = _scheduled_secret(services)
    assert check_alerts(services, now)["failed"] == ["secrets_overdue"]
    services.notifier = WebhookNotifier(receiver.url, WEBHOOK_SECRET)
    assert check_alerts(services, now)["sent"] == ["secrets_overdue"]


def test_failure_rate_is_read_from_the_decision_log(ops_env):
    """Ten allowed proxied calls, one answered 500 by the system: a 10% failure rate for erp."""
    from govern.ops.alerts import read_state
    from tests.broker.conftest import access_token

    env = ops_env
    token = access_token(env.client, user=env.names["user"], secret=env.names["client_secret"])
    env.resources.fail_next(1, status=500)
    for _ in range(10):
        env.client.get("/api/v1/named-credentials/erp-api/proxy/orders", headers={"Authorization": f"Bearer {token}"},
                       environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert env.services.decision_log.flush()
    readings = read_state(env.services, utcnow())
    assert readings.calls == {"erp": (10, 1)}
    assert keys(evaluate(readings, Thresholds(failure_ratio=0.05))) == ["failure_rate:erp"]
