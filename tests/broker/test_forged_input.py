"""Forged input: spoofed X-Forwarded-For, and JWTs that must be rejected (RFC 8725)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from joserfc import jwk, jwt

from govern.config import load_settings
from tests.broker.conftest import access_token, ask, decisions


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(clock, **over):
    now = int(clock.now().timestamp())
    claims = {"iss": "govern", "sub": "order-sync", "aud": "govern", "iat": now, "exp": now + 600,
              "jti": "x", "scope": "orders.read"}
    claims.update(over)
    return claims


def _current_kid(services):
    return services.signing_keys.jwks()["keys"][0]["kid"]


def _unauthorized(resp):
    assert resp.status_code == 401, resp.get_json()
    assert resp.mimetype == "application/problem+json" and resp.get_json()["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(broker_client, broker_services, landscape):
    token = access_token(broker_client)
    resp = ask(broker_client, token, remote="203.0.113.9", headers={"X-Forwarded-For": "127.0.0.1"})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "deny:ip_outside_ranges"
    [rec] = decisions(broker_services)
    assert rec.source_ip == "203.0.113.9"


def test_spoofed_forwarded_for_at_token_issuance_is_ignored(broker_client, landscape):
    from tests.broker.conftest import basic

    resp = broker_client.post("/oauth/token", data={"grant_type": "client_credentials"},
                              headers={**basic("order-sync", "s3cret-client-secret-value"), "X-Forwarded-For": "127.0.0.1"},
                              environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"


def test_trusted_proxy_forwarded_for_is_believed_right_to_left(tmp_path, database_url, clock):
    from govern.app import create_app
    from govern.bootstrap import build_services
    from tests.broker.conftest import FakeUpstreamTokens
    from tests.factories import make_landscape
    from tests.fakes.secret_store import MemorySecretStore

    settings = load_settings({}, home=tmp_path / "i", database_url=database_url, trusted_proxies=("10.0.0.0/8",))
    svc = build_services(settings, clock=clock)
    svc.secret_store = MemorySecretStore()
    svc.upstream_tokens = FakeUpstreamTokens(clock)
    try:
        make_landscape(svc, cidrs=("198.51.100.0/24",))
        client = create_app({"TESTING": True}, services=svc).test_client()
        token = access_token(client, remote="198.51.100.7")
        # Client at 198.51.100.7 behind proxies 10.1.1.1 and 10.2.2.2; the forged left-most entry is ignored.
        xff = {"X-Forwarded-For": "203.0.113.66, 198.51.100.7, 10.1.1.1"}
        assert ask(client, token, remote="10.2.2.2", headers=xff).status_code == 200
        # The same header from the proxy, but the client itself is outside the ranges.
        xff = {"X-Forwarded-For": "198.51.100.7, 203.0.113.66"}
        resp = ask(client, token, remote="10.2.2.2", headers=xff)
        assert resp.status_code == 403 and resp.get_json()["rule"] == "deny:ip_outside_ranges"
        # Issuance through the proxy sees the client address too; the proxy's own address is not the client's.
        from tests.broker.conftest import basic

        def issue_via_proxy(headers):
            return client.post("/oauth/token", data={"grant_type": "client_credentials"},
                               headers={**basic("order-sync", "s3cret-client-secret-value"), **headers},
                               environ_base={"REMOTE_ADDR": "10.2.2.2"})

        assert issue_via_proxy({"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        assert issue_via_proxy({}).get_json()["error"] == "invalid_client"
    finally:
        svc.close()


def test_alg_none_is_rejected(broker_client, broker_services, clock, landscape):
    access_token(broker_client)
    token = f"{_b64({'alg': 'none', 'kid': _current_kid(broker_services)})}.{_b64(_claims(clock))}."
    _unauthorized(ask(broker_client, token))


def test_hs256_signed_with_the_public_key_is_rejected(broker_client, broker_services, clock, landscape):
    access_token(broker_client)
    public = broker_services.signing_keys.jwks()["keys"][0]
    pem = jwk.import_key(public).as_pem(private=False)
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': public['kid']})}.{_b64(_claims(clock))}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    _unauthorized(ask(broker_client, forged))


def test_token_signed_by_an_unknown_key_is_rejected(broker_client, broker_services, clock, landscape):
    access_token(broker_client)
    rogue = jwk.RSAKey.generate_key(2048, parameters={"kid": _current_kid(broker_services)}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": _current_kid(broker_services)}, _claims(clock), rogue)
    _unauthorized(ask(broker_client, forged))
    other_kid = jwt.encode({"alg": "RS256", "kid": "rogue"}, _claims(clock), rogue)
    _unauthorized(ask(broker_client, other_kid))


def test_expired_token_is_rejected(broker_client, clock, landscape):
    token = access_token(broker_client)
    assert ask(broker_client, token).status_code == 200
    clock.advance(901)
    _unauthorized(ask(broker_client, token))


def _signed(services, claims):
    return services.signing_keys.sign(claims)


def test_wrong_audience_is_rejected(broker_client, broker_services, clock, landscape):
    access_token(broker_client)
    _unauthorized(ask(broker_client, _signed(broker_services, _claims(clock, aud="someone-else"))))
    assert ask(broker_client, _signed(broker_services, _claims(clock))).status_code == 200  # control


def test_wrong_issuer_and_missing_exp_are_rejected(broker_client, broker_services, clock, landscape):
    access_token(broker_client)
    _unauthorized(ask(broker_client, _signed(broker_services, _claims(clock, iss="https://evil.example"))))
    claims = _claims(clock)
    del claims["exp"]
    _unauthorized(ask(broker_client, _signed(broker_services, claims)))


def test_garbage_tokens_are_rejected(broker_client, landscape):
    for token in ("nope", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "...."):
        _unauthorized(ask(broker_client, token))
