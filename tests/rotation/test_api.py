"""/api/v1/rotations over HTTP."""
from __future__ import annotations

import pytest

from govern.rotation import machine
from govern.rotation.wiring import rotation_service
from tests.fakes.secret_store import MemorySecretStore
from tests.rotation.conftest import add_secret
from tests.rotation.test_runner_static import FlakyRotator


@pytest.fixture
def api(services, admin_token, clock, notifier):
    services.secret_store = MemorySecretStore()
    services.clock = clock
    services.notifier = notifier
    return services


def _h(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator_token(services):
    from govern.store.admins import create_admin, issue_token

    create_admin(services.sessions, "op", "correct horse battery staple", "operator")
    create_admin(services.sessions, "aud", "correct horse battery staple", "auditor")
    return issue_token(services.sessions, "op"), issue_token(services.sessions, "aud")


def test_start_list_show(client, api, operator_token):
    op, aud = operator_token
    add_secret(api, "s1", due_at=None)
    assert client.post("/api/v1/rotations", json={"secret": "s1"}).status_code == 401
    resp = client.post("/api/v1/rotations", json={"secret": "s1"}, headers=_h(aud))
    assert resp.status_code == 403 and resp.content_type == "application/problem+json"
    resp = client.post("/api/v1/rotations", json={"secret": "s1"}, headers=_h(op))
    assert resp.status_code == 202, resp.get_json()
    run = resp.get_json()
    assert run["state"] == machine.CREATED and resp.headers["Location"].endswith(f"/api/v1/rotations/{run['id']}")
    again = client.post("/api/v1/rotations", json={"secret": "s1"}, headers=_h(op))
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"
    rotation_service(api, worker_id="w").drain()
    shown = client.get(f"/api/v1/rotations/{run['id']}", headers=_h(aud)).get_json()
    assert shown["state"] == "finished" and [s["step"] for s in shown["steps"]] == list(machine.STEPS)
    listed = client.get("/api/v1/rotations?secret=s1&state=finished", headers=_h(aud)).get_json()["items"]
    assert [r["id"] for r in listed] == [run["id"]]
    assert client.get("/api/v1/rotations?state=nope", headers=_h(aud)).status_code == 422
    assert client.get("/api/v1/rotations/9999", headers=_h(aud)).status_code == 404
    assert client.post("/api/v1/rotations", json={}, headers=_h(op)).get_json()["code"] == "validation_failed"
    assert client.post("/api/v1/rotations", json={"secret": "nope"}, headers=_h(op)).status_code == 404


def test_retry_and_acknowledge_a_parked_run(client, api, operator_token, clock):
    op, aud = operator_token
    add_secret(api, "s1", rotator="flaky")
    svc = rotation_service(api, worker_id="w", policy=machine.RetryPolicy(max_attempts=1))
    flaky = svc._rotators["flaky"] = FlakyRotator(fail_times=1)
    (o,) = svc.tick()
    assert o.status == "parked"
    assert client.post(f"/api/v1/rotations/{o.run_id}/acknowledge", headers=_h(aud)).status_code == 403
    acked = client.post(f"/api/v1/rotations/{o.run_id}/acknowledge", headers=_h(op)).get_json()
    assert acked["steps"][-1]["step"] == "acknowledge" and acked["steps"][-1]["by"] == "op"
    resp = client.post(f"/api/v1/rotations/{o.run_id}/retry", headers=_h(op))
    assert resp.status_code == 202 and resp.get_json()["state"] == machine.PENDING
    assert client.post(f"/api/v1/rotations/{o.run_id}/retry", headers=_h(op)).status_code == 409
    (done,) = svc.drain()
    assert done.status == "finished" and flaky.calls == 2


def test_confirm_a_manual_set_over_http(client, api, operator_token):
    from govern.store.db import session_scope
    from govern.store.tables import ExternalCredential, System

    op, aud = operator_token
    with session_scope(api.sessions) as s:
        system = System(external_id="crm-sys")
        s.add(system)
        s.flush()
        s.add(ExternalCredential(external_id="crm", system_id=system.id, protocol="oauth2_client_credentials",
                                 client_id="c", rotation={"set": "manual"}))
    add_secret(api, "credential/crm/client_secret", rotator="upstream_client_secret", owner_kind="credential",
               owner="crm", initial="old")
    (o,) = rotation_service(api, worker_id="w").tick()
    assert o.status == machine.AWAITING
    assert client.post(f"/api/v1/rotations/{o.run_id}/confirm", headers=_h(aud)).status_code == 403
    resp = client.post(f"/api/v1/rotations/{o.run_id}/confirm", headers=_h(op))
    assert resp.status_code == 202 and resp.get_json()["state"] == machine.SET
    assert resp.get_json()["steps"][-1] == {**resp.get_json()["steps"][-1], "step": "confirm", "by": "op"}
    again = client.post(f"/api/v1/rotations/{o.run_id}/confirm", headers=_h(op))
    assert again.status_code == 409


def test_retry_of_a_parked_run_is_refused_while_a_newer_run_is_active(client, api, operator_token):
    op, aud = operator_token
    add_secret(api, "s1", rotator="flaky")
    svc = rotation_service(api, worker_id="w", policy=machine.RetryPolicy(max_attempts=1))
    svc._rotators["flaky"] = FlakyRotator(fail_times=1)
    (parked,) = svc.tick()
    assert parked.status == "parked"
    newer = client.post("/api/v1/rotations", json={"secret": "s1"}, headers=_h(op))
    assert newer.status_code == 202 and newer.get_json()["id"] != parked.run_id
    resp = client.post(f"/api/v1/rotations/{parked.run_id}/retry", headers=_h(op))
    assert resp.status_code == 409 and resp.content_type == "application/problem+json"
    assert resp.get_json()["detail"] == "another run of this secret is active"
    shown = client.get(f"/api/v1/rotations/{parked.run_id}", headers=_h(aud)).get_json()
    assert shown["state"] == machine.PARKED and shown["steps"][-1]["step"] != "retry"  # nothing was written
    ack = client.post(f"/api/v1/rotations/{newer.get_json()['id']}/acknowledge", headers=_h(op))
    assert ack.status_code == 409 and "only parked runs are acknowledged" in ack.get_json()["detail"]
