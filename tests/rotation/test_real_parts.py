"""Rotators against the real parts they rotate: the token endpoint's client-secret check, the broker's
signing-key set and JWKS, and the local secret store's master keys (no fakes on the rotated side)."""
from __future__ import annotations

import sqlalchemy as sa

from govern.domain.secret import Secret
from govern.rotation.wiring import rotation_service
from govern.secrets.service import secret_service
from govern.store.db import session_scope
from govern.store.tables import SecretRef
from tests.broker.conftest import access_token, ask, broker_client, broker_services, clock, issue  # noqa: F401
from tests.factories import make_landscape
from tests.rotation.conftest import add_secret

OLD = "s3cret-client-secret-value"


def _ref_id(services, name):
    with session_scope(services.sessions) as s:
        return s.execute(sa.select(SecretRef.id).where(SecretRef.external_id == name)).scalar_one()


def test_client_secret_rotation_is_seen_by_the_token_endpoint(broker_client, broker_services, clock):
    make_landscape(broker_services)
    status = secret_service(broker_services).put_for_user("order-sync", "client_secret", OLD)
    svc = rotation_service(broker_services, worker_id="w1")
    outcome = svc.rotate(_ref_id(broker_services, status.ref), force=True)
    assert outcome.status == "finished", outcome
    new = broker_services.secret_store.get(status.ref).reveal()
    assert new != OLD
    # During the overlap (the default 24h) both secrets get tokens; after it, only the new one.
    assert issue(broker_client, secret=OLD).status_code == 200
    assert issue(broker_client, secret=new).status_code == 200
    clock.advance(86400 + 1)
    assert issue(broker_client, secret=OLD).status_code == 401
    assert issue(broker_client, secret=new).status_code == 200
    assert [o.status for o in svc.revoke_expired()] == ["revoked"]
    assert issue(broker_client, secret=new).status_code == 200


def test_signing_key_rotation_keeps_old_tokens_valid_until_they_expire(broker_client, broker_services, clock):
    make_landscape(broker_services)
    old_token = access_token(broker_client)
    (old_kid,) = [k["kid"] for k in broker_client.get("/oauth/jwks.json").get_json()["keys"]]
    add_secret(broker_services, "govern/signing-keys", rotator="signing_keys", owner_kind="govern", initial=None,
               due_at=clock.now())
    svc = rotation_service(broker_services, worker_id="w1")
    assert [o.status for o in svc.tick()] == ["finished"]
    kids = [k["kid"] for k in broker_client.get("/oauth/jwks.json").get_json()["keys"]]
    assert len(kids) == 2 and old_kid in kids
    new_token = access_token(broker_client)
    assert ask(broker_client, old_token).status_code == 200  # signed by the retiring key, still live
    assert ask(broker_client, new_token).status_code == 200
    settings = broker_services.settings
    clock.advance(settings.access_token_lifetime_seconds + settings.token_leeway_seconds + 1)
    from govern.worker import jobs, run_pass

    run_pass(broker_services, jobs(broker_services, svc))  # the worker retires keys past their tokens' lifetime
    kids = [k["kid"] for k in broker_client.get("/oauth/jwks.json").get_json()["keys"]]
    assert old_kid not in kids and len(kids) == 1
    assert ask(broker_client, access_token(broker_client)).status_code == 200


def test_store_key_rotation_rewraps_the_local_store(settings):
    from govern.bootstrap import build_services
    from govern.secrets import build_keyring
    from govern.secrets.local import LocalSecretStore

    services = build_services(settings)  # the real LocalSecretStore, its key file in GOVERN_HOME
    try:
        store = services.secret_store
        assert isinstance(store, LocalSecretStore)
        store.put("app/one", Secret("value-one"))
        store.put("app/two", Secret("value-two"))
        other = LocalSecretStore(services.sessions, lambda: build_keyring(settings))
        assert other.get("app/one").reveal() == "value-one"  # another process, with the key list loaded
        before = store.keyring.current.key_id
        sealed = services.cache_cipher.seal(b"cached")
        add_secret(services, "govern/store-key", rotator="store_key", owner_kind="govern", initial=None,
                   due_at=services.clock.now())
        assert [o.status for o in rotation_service(services, worker_id="w1").tick()] == ["finished"]
        after = store.keyring.current.key_id
        assert after != before and store.key_usage() == {after: 2}
        assert store.get("app/two").reveal() == "value-two"
        assert other.get("app/one").reveal() == "value-one"  # it re-reads the key list on an unknown key id
        cipher = services.cache_cipher
        assert cipher.open(sealed) == b"cached"  # the old key stays for reading
        assert cipher.open(cipher.seal(b"fresh")) == b"fresh"
    finally:
        services.close()
