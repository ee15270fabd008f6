"""Built-in rotators other than PostgreSQL: client secrets, signing keys, store keys, upstream secrets."""
from __future__ import annotations

import datetime as dt
import json

from sqlmodel import select

from govern.domain.client_auth import hash_client_secret, verify_client_secret
from govern.domain.secret import Secret
from govern.rotation import machine
from govern.rotation.rotators import rotator_names
from tests.rotation.secret_order import ordered_secrets
from govern.rotation.wiring import rotation_service
from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, IntegrationUser, RotationRun, System
from tests.rotation.conftest import add_secret
from tests.rotation.http_recorder import Recorder, basic_auth


def test_builtins_are_discoverable():
    assert {"static", "postgres_role", "client_secret", "signing_keys", "store_key", "upstream_client_secret"} <= set(rotator_names())


# --- integration users' client secrets ----------------------------------------------------------------

def _user(services, name, secret):
    with session_scope(services.sessions) as s:
        s.add(IntegrationUser(external_id=name, client_secret_hash=hash_client_secret(secret)))


def _load_user(services, name):
    with session_scope(services.sessions) as s:
        return s.execute(select(IntegrationUser).where(IntegrationUser.external_id == name)).scalar_one()


def test_client_secret_both_valid_during_overlap_then_only_new(rsvc, clock):
    _user(rsvc, "erp-sync", "old-secret-value")
    add_secret(rsvc, "iu/erp-sync/client_secret", rotator="client_secret", owner_kind="integration_user",
               owner="erp-sync", initial="old-secret-value", overlap=3600)
    svc = rotation_service(rsvc, worker_id="w1")
    assert [o.status for o in svc.tick()] == ["finished"]
    new = rsvc.secret_store.get("rotation-test/iu/erp-sync/client_secret").reveal()
    assert new.startswith("gvs_") and new != "old-secret-value"
    user = _load_user(rsvc, "erp-sync")
    assert verify_client_secret(user, new, clock.now())
    assert verify_client_secret(user, "old-secret-value", clock.now())
    assert not verify_client_secret(user, "something-else", clock.now())
    clock.advance(seconds=3601)
    assert not verify_client_secret(user, "old-secret-value", clock.now())  # the rule alone expires it
    assert [o.status for o in svc.revoke_expired()] == ["revoked"]
    user = _load_user(rsvc, "erp-sync")
    assert user.previous_client_secret_hash is None
    assert verify_client_secret(user, new, clock.now())


def test_client_secret_rule_refuses_inactive_users():
    class U:
        status = "suspended"
        client_secret_hash = hash_client_secret("s3cret")
        previous_client_secret_hash = None
        previous_secret_expires_at = None

    assert not verify_client_secret(U(), "s3cret", dt.datetime.now(dt.UTC))
    U.status = "active"
    assert verify_client_secret(U(), "s3cret", dt.datetime.now(dt.UTC))


# --- signing keys and store keys -------------------------------------------------------------------

class FakeKeySet:
    def __init__(self):
        self.rotations = 0
        self.retired = 0

    def rotate(self):
        self.rotations += 1

    def retire_expired(self):
        self.retired += 1


def test_signing_keys_not_configured_is_a_per_item_failure(rsvc):
    rsvc.signing_key_hook = None  # as in an instance without the authorization server
    add_secret(rsvc, "govern/signing", rotator="signing_keys", owner_kind="govern", initial=None)
    add_secret(rsvc, "other", rotator="static")
    out = {o.secret: o for o in rotation_service(rsvc, worker_id="w1").tick()}
    assert out["other"].status == "finished"
    assert out["govern/signing"].failed and "rotation_not_configured" in out["govern/signing"].detail


def test_signing_keys_rotate_through_the_hook(rsvc):
    keys = FakeKeySet()
    rsvc.signing_key_hook = keys
    add_secret(rsvc, "govern/signing", rotator="signing_keys", owner_kind="govern", initial=None)
    svc = rotation_service(rsvc, worker_id="w1")
    assert [o.status for o in svc.tick()] == ["finished"]
    assert keys.rotations == 1
    from govern.worker import jobs, run_pass

    run_pass(rsvc, jobs(rsvc, svc))  # the worker's signing_keys job
    assert keys.retired == 1


def test_store_key_not_supported_by_the_fake_store(rsvc):
    add_secret(rsvc, "govern/store-key", rotator="store_key", owner_kind="govern", initial=None)
    (o,) = rotation_service(rsvc, worker_id="w1").tick()
    assert o.failed and "not supported by this store" in o.detail


def test_store_key_delegates_to_the_store_and_cache_cipher(rsvc):
    calls = []
    rsvc.secret_store.rotate_key = lambda: calls.append("store")
    rsvc.cache_cipher = type("C", (), {"rotate": lambda self: calls.append("cache")})()
    rsvc.secret_store.put("some/secret", Secret("v"))
    add_secret(rsvc, "govern/store-key", rotator="store_key", owner_kind="govern", initial=None)
    (o,) = rotation_service(rsvc, worker_id="w1").tick()
    assert o.status == "finished" and calls == ["store", "cache"]


# --- upstream client secrets ---------------------------------------------------------------------

def _credential(services, name, token_url, set_cfg):
    with session_scope(services.sessions) as s:
        system = System(external_id=f"sys-{name}")
        s.add(system)
        s.flush()
        s.add(ExternalCredential(external_id=name, system_id=system.id, protocol="oauth2_client_credentials",
                                 token_url=token_url, client_id="client-1", client_auth_method="client_secret_basic",
                                 rotation={"set": set_cfg}))


def _fake_upstream(accepted: set[str]):
    def manage(req):
        accepted.add(json.loads(req["body"])["client_secret"])
        return 200, {}

    def token(req):
        creds = basic_auth(req)
        if creds and creds[0] == "client-1" and creds[1] in accepted:
            return 200, {"access_token": "at", "token_type": "Bearer", "expires_in": 60}
        return 401, {"error": "invalid_client"}

    return {"/manage": manage, "/token": token}


def test_upstream_http_set_then_token_test_and_ordered_fallback(rsvc, clock):
    accepted = {"upstream-old"}
    with Recorder(_fake_upstream(accepted)) as up:
        _credential(rsvc, "erp-oauth", up.url + "/token", {"kind": "http", "url": up.url + "/manage"})
        add_secret(rsvc, "credential/erp-oauth/client_secret", rotator="upstream_client_secret", owner_kind="credential",
                   owner="erp-oauth", initial="upstream-old", overlap=600)
        (o,) = rotation_service(rsvc, worker_id="w1").tick()
        assert o.status == "finished", o
        manage = [r for r in up.requests if r["path"] == "/manage"]
        assert len(manage) == 1 and manage[0]["headers"]["Idempotency-Key"].startswith("govern-rotation-")
    order = [s.reveal() for s in ordered_secrets(rsvc, "credential/erp-oauth/client_secret", clock.now())]
    assert order[1] == "upstream-old" and order[0] in accepted and len(order) == 2
    clock.advance(seconds=601)
    assert len(ordered_secrets(rsvc, "credential/erp-oauth/client_secret", clock.now())) == 1
    with session_scope(rsvc.sessions) as s:
        assert s.execute(select(RotationRun.system_key)).scalar_one() == "system:sys-erp-oauth"


def test_upstream_refusing_the_new_secret_fails_the_test_and_keeps_current(rsvc):
    accepted = {"upstream-old"}
    routes = _fake_upstream(accepted)
    routes["/manage"] = lambda req: (200, {})  # says yes, applies nothing
    with Recorder(routes) as up:
        _credential(rsvc, "erp-oauth", up.url + "/token", {"kind": "http", "url": up.url + "/manage"})
        add_secret(rsvc, "credential/erp-oauth/client_secret", rotator="upstream_client_secret", owner_kind="credential",
                   owner="erp-oauth", initial="upstream-old")
        (o,) = rotation_service(rsvc, worker_id="w1").tick()
    assert o.status == "retrying" and "refused the new secret (401)" in o.detail
    order = ordered_secrets(rsvc, "credential/erp-oauth/client_secret",
                            dt.datetime.now(dt.UTC))
    assert [s.reveal() for s in order] == ["upstream-old"]


def test_manual_set_waits_for_confirmation(rsvc, notifier, clock):
    accepted = {"upstream-old"}
    with Recorder(_fake_upstream(accepted)) as up:
        _credential(rsvc, "crm", up.url + "/token", "manual")
        add_secret(rsvc, "credential/crm/client_secret", rotator="upstream_client_secret", owner_kind="credential",
                   owner="crm", initial="upstream-old")
        svc = rotation_service(rsvc, worker_id="w1", reminder_every=dt.timedelta(hours=1))
        (o,) = svc.tick()
        assert o.status == machine.AWAITING
        assert notifier.names() == ["rotation.reminder"]
        assert f"govern rotate confirm {o.run_id}" in notifier.events[0][1]["detail"]
        assert svc.tick() == [] and notifier.names() == ["rotation.reminder"]  # waits; no second reminder yet
        clock.advance(hours=1)
        svc.tick()
        assert notifier.names() == ["rotation.reminder", "rotation.reminder"]
        # The operator puts the new secret in place at the system, then confirms.
        # It is staged apart, so readers of the secret's own path keep the working one meanwhile.
        assert notifier.events[0][1]["staged_path"] == "_pending/rotation-test/credential/crm/client_secret"
        assert rsvc.secret_store.get("rotation-test/credential/crm/client_secret").reveal() == "upstream-old"
        accepted.add(rsvc.secret_store.get("_pending/rotation-test/credential/crm/client_secret").reveal())
        out = svc.confirm(o.run_id, "ops@example")
        assert out.status == "finished"
    with session_scope(rsvc.sessions) as s:
        run = s.get(RotationRun, o.run_id)
    assert [st["step"] for st in run.steps] == ["create_pending", "set", "confirm", "test", "finish"]
    assert run.steps[2]["by"] == "ops@example"
