"""POST /oauth/token: govern's client_credentials grant, client_secret_basic and private_key_jwt."""
from __future__ import annotations

import time
import uuid

import pytest
from joserfc import jwk, jwt

from govern.errors import ValidationFailed
from tests.broker.conftest import basic, issue
from tests.factories import make_landscape, update_entity

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _oauth_error(resp, status, error):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    assert resp.get_json()["error"] == error
    return resp


def _claims(services, token):
    key = services.signing_keys
    header = jwt.decode(token, jwk.KeySet.import_key_set(key.jwks()), algorithms=["RS256"])
    return header.header, header.claims


def test_client_secret_basic_issues_a_signed_scoped_jwt(broker_client, broker_services, landscape):
    resp = issue(broker_client)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    assert body["scope"] == "orders.read orders.write"  # no scope asked: all allowed scopes
    assert body["expires_in"] == 900
    header, claims = _claims(broker_services, body["access_token"])
    jwks = broker_client.get("/oauth/jwks.json").get_json()
    assert header["kid"] in [k["kid"] for k in jwks["keys"]] and header["alg"] == "RS256"
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # public halves only
    assert claims["sub"] == "order-sync" and claims["aud"] == "govern" and claims["iss"] == "govern"
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"]
    assert "cidr" not in claims and "cidrs" not in claims


def test_scope_narrowing(broker_client, landscape):
    assert issue(broker_client, scope="orders.read").get_json()["scope"] == "orders.read"
    _oauth_error(issue(broker_client, scope="orders.read admin"), 400, "invalid_scope")


def test_lifetime_is_the_smallest_of_the_default_and_the_permission_sets(broker_client, broker_services):
    make_landscape(broker_services, max_token_lifetime=300)
    assert issue(broker_client).get_json()["expires_in"] == 300


def test_wrong_secret_is_invalid_client_401(broker_client, landscape):
    resp = _oauth_error(issue(broker_client, secret="wrong"), 401, "invalid_client")
    assert "WWW-Authenticate" in resp.headers
    _oauth_error(issue(broker_client, user="nobody"), 401, "invalid_client")


def test_suspended_and_retired_users_are_invalid_client(broker_client, broker_services, landscape):
    for status in ("suspended", "retired"):
        update_entity(broker_services, "integration_users", "order-sync", status=status)
        _oauth_error(issue(broker_client), 401, "invalid_client")


def test_previous_secret_works_only_during_the_rotation_overlap(broker_client, broker_services, clock, landscape):
    import random

    from govern.rotation.wiring import rotation_service

    ref = "integration_user/order-sync/client_secret"
    update_entity(broker_services, "integration_users", "order-sync", rotation={"every": "90d", "overlap": "1h"})
    rotation = rotation_service(broker_services, rng=random.Random(7))
    outcome = rotation.rotate(rotation.find_ref(ref).id, force=True)  # govern rotate REF --commit
    assert not outcome.failed, outcome.as_dict()
    new_secret = broker_services.secret_store.get(ref).reveal()
    assert new_secret != "s3cret-client-secret-value"
    assert issue(broker_client).status_code == 200
    assert issue(broker_client, secret=new_secret).status_code == 200
    clock.advance(3601)
    _oauth_error(issue(broker_client), 401, "invalid_client")
    assert issue(broker_client, secret=new_secret).status_code == 200


def test_source_ip_is_checked_at_issuance(broker_client, landscape):
    # The same answer as a wrong secret (the address is checked first, and a refusal names no reason).
    _oauth_error(issue(broker_client, remote="203.0.113.9"), 401, "invalid_client")


def test_protocol_errors_use_rfc6749_codes(broker_client, landscape):
    resp = broker_client.post("/oauth/token", data={"grant_type": "password", "username": "x", "password": "y"},
                              headers=basic("order-sync", "s3cret-client-secret-value"))
    _oauth_error(resp, 400, "unsupported_grant_type")
    _oauth_error(broker_client.post("/oauth/token", data={}), 400, "invalid_request")


def test_no_secret_store_refuses_issuance_clearly(broker_client, broker_services, landscape):
    broker_services.secret_store = None
    resp = issue(broker_client)
    assert resp.status_code == 500 and resp.mimetype == "application/json"
    assert resp.get_json()["error"] == "server_error"
    assert "secret store" in resp.get_json()["error_description"]


# --- private_key_jwt (RFC 7523) ---------------------------------------------------------------------

def _jwt_user(services):
    key = jwk.RSAKey.generate_key(2048, parameters={"kid": "client-key-1"}, private=True)
    make_landscape(services, client_secret=None, user_auth="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    return key


def _assertion(key, jti=None, aud="http://127.0.0.1:8000/oauth/token", sub="order-sync"):
    now = int(time.time())  # authlib checks the assertion's exp against the real clock
    claims = {"iss": sub, "sub": sub, "aud": aud, "iat": now, "exp": now + 60, "jti": jti or uuid.uuid4().hex}
    return jwt.encode({"alg": "RS256", "kid": "client-key-1"}, claims, key)


def _post_assertion(client, assertion, scope=None):
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    if scope:
        data["scope"] = scope
    return client.post("/oauth/token", data=data, environ_base={"REMOTE_ADDR": "127.0.0.1"})


def test_private_key_jwt_issues_a_token_and_refuses_a_replayed_jti(broker_client, broker_services):
    key = _jwt_user(broker_services)
    assertion = _assertion(key)
    resp = _post_assertion(broker_client, assertion, scope="orders.read")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["scope"] == "orders.read"
    _oauth_error(_post_assertion(broker_client, assertion), 401, "invalid_client")


def test_private_key_jwt_refuses_other_keys_audiences_and_basic_auth(broker_client, broker_services):
    key = _jwt_user(broker_services)
    rogue = jwk.RSAKey.generate_key(2048, parameters={"kid": "client-key-1"}, private=True)
    _oauth_error(_post_assertion(broker_client, _assertion(rogue)), 401, "invalid_client")
    _oauth_error(_post_assertion(broker_client, _assertion(key, aud="https://elsewhere/token")), 401, "invalid_client")
    # A private_key_jwt client cannot fall back to a secret.
    _oauth_error(issue(broker_client, secret="anything"), 401, "invalid_client")


def test_authorization_server_metadata(broker_client):
    meta = broker_client.get("/.well-known/oauth-authorization-server").get_json()
    assert meta["token_endpoint"] == "http://127.0.0.1:8000/oauth/token" and meta["jwks_uri"].endswith("/oauth/jwks.json")
    assert meta["grant_types_supported"] == ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "private_key_jwt"}


def test_private_key_jwt_refuses_hmac_assertions_and_apply_refuses_an_oct_key(broker_client, broker_services):
    import base64

    key = _jwt_user(broker_services)
    secret = b"k" * 32
    oct_jwk = {"kty": "oct", "kid": "client-key-1", "k": base64.urlsafe_b64encode(secret).decode().rstrip("=")}
    # govern apply refuses a symmetric key in a user's JWK Set (its `k` is secret material) ...
    with pytest.raises(ValidationFailed, match="private key members"):
        update_entity(broker_services, "integration_users", "order-sync",
                      jwks={"keys": [oct_jwk, key.as_dict(private=False)]})
    # ... and an HS256 assertion under the registered RSA key's kid is refused whatever its secret.
    now = int(time.time())
    claims = {"iss": "order-sync", "sub": "order-sync", "aud": "http://127.0.0.1:8000/oauth/token", "iat": now,
              "exp": now + 60, "jti": uuid.uuid4().hex}
    forged = jwt.encode({"alg": "HS256", "kid": "client-key-1"}, claims, jwk.OctKey.import_key(secret),
                        algorithms=["HS256"])
    _oauth_error(_post_assertion(broker_client, forged), 401, "invalid_client")
    assert _post_assertion(broker_client, _assertion(key)).status_code == 200


@pytest.mark.redis
def test_a_replayed_assertion_is_refused_by_another_process_through_redis(settings, clock, redis_url, redis_prefix):
    """Two govern instances sharing Redis: an assertion used on one is refused on the other."""
    from govern.app import create_app
    from govern.bootstrap import build_services
    from tests.fakes.secret_store import MemorySecretStore

    shared = settings.with_overrides(redis_url=redis_url, redis_prefix=redis_prefix)
    instances = []
    store = MemorySecretStore()  # one secret store, as two processes share one vault
    try:
        for _ in range(2):
            svc = build_services(shared, clock=clock)
            svc.secret_store = store
            instances.append(svc)
        key = _jwt_user(instances[0])
        a, b = (create_app({"TESTING": True}, services=svc).test_client() for svc in instances)
        assertion = _assertion(key)
        assert _post_assertion(a, assertion).status_code == 200
        _oauth_error(_post_assertion(b, assertion), 401, "invalid_client")
    finally:
        for svc in instances:
            svc.close()
