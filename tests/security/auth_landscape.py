"""Shared by the authentication-hardening tests (issue #14): a landscape built through `govern apply` and
`govern secrets put`, as a user builds it, and govern instances over it with chosen settings.

- order-sync: client_secret_basic, from 127.0.0.0/8 and 10.1.0.0/16;
- jwt-sync: private_key_jwt with a registered RSA key, from 127.0.0.0/8 and 10.1.0.0/16;
- far-sync: client_secret_basic, from 192.0.2.0/24 only (an address inside some user's ranges, not ours).
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass

import pytest
from joserfc import jwk, jwt

SECRET = "s3curity-order-sync-secret"
FAR_SECRET = "s3curity-far-sync-secret"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PUBLIC_URL = "https://govern.example.com"
TOKEN_URL = f"{PUBLIC_URL}/oauth/token"

LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: erp, name: ERP, kind: erp, scopes: [orders.read]}}
credentials:
  - id: erp-cc
    system: erp
    protocol: oauth2_client_credentials
    token_url: https://erp.example.com/oauth/token
    client_id: erp-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: default}}]
  - id: erp-rt
    system: erp
    protocol: oauth2_refresh_token
    token_url: https://erp.example.com/oauth/token
    authorize_url: https://erp.example.com/oauth/authorize
    client_id: erp-rt-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: alice, subject: alice}}]
  - id: erp-jwt
    system: erp
    protocol: oauth2_jwt_bearer
    token_url: https://erp.example.com/oauth/token
    client_id: erp-jwt-client
    scopes: [orders.read]
    principals: [{{name: bob, subject: bob@erp}}]
named_credentials:
  - {{id: erp-api, credential: erp-cc, url: "https://erp.example.com/api", methods: [GET], paths: ["/api/**"]}}
integration_users:
  - id: order-sync
    name: Order sync
    owner: erp-team@example.com
    justification: Reads orders (security tests).
    review_date: 2099-01-01
    ip_ranges: [127.0.0.0/8, 10.1.0.0/16]
    scopes: [orders.read]
    permission_sets: [erp-reader]
  - id: jwt-sync
    name: JWT sync
    owner: erp-team@example.com
    justification: Authenticates with private_key_jwt (security tests).
    review_date: 2099-01-01
    auth: private_key_jwt
    jwks: {{keys: [{jwk}]}}
    ip_ranges: [127.0.0.0/8, 10.1.0.0/16]
    scopes: [orders.read]
    permission_sets: [erp-reader]
  - id: far-sync
    name: Far sync
    owner: erp-team@example.com
    justification: Calls from another network (security tests).
    review_date: 2099-01-01
    ip_ranges: [192.0.2.0/24]
    scopes: [orders.read]
    permission_sets: [erp-reader]
permission_sets:
  - id: erp-reader
    scopes: [orders.read]
    api_types: [REST]
    grants:
      - {{named_credential: erp-api, principal: default, methods: [GET], paths: ["/api/orders"]}}
"""


@dataclass
class Applied:
    client_key: jwk.RSAKey  # jwt-sync's private key (its public half is registered through apply)


def apply_landscape(runner, tmp_path) -> Applied:
    key = jwk.RSAKey.generate_key(2048, parameters={"kid": "jwt-sync-1"}, private=True)
    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE.format(jwk=json.dumps(key.as_dict(private=False))))
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    for user, secret in (("order-sync", SECRET), ("far-sync", FAR_SECRET)):
        result = runner.invoke(["secrets", "put", "--user", user, "--field", "client_secret"], input=secret)
        assert result.exit_code == 0, result.output
    return Applied(client_key=key)


@pytest.fixture
def applied(runner, tmp_path) -> Applied:
    return apply_landscape(runner, tmp_path)


@pytest.fixture
def govern_instance(settings):
    """Builds govern (services + app) over the test database with chosen settings; closes them after."""
    from govern.app import create_app
    from govern.bootstrap import build_services

    built = []

    def make(**overrides):
        services = build_services(settings.with_overrides(**{"public_url": PUBLIC_URL, **overrides}))
        built.append(services)
        return services, create_app({"TESTING": True}, services=services).test_client()

    yield make
    for services in built:
        services.close()


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def token_with_secret(client, user="order-sync", secret=SECRET, remote="127.0.0.1", headers=None):
    return client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers={**basic(user, secret), **(headers or {})}, environ_base={"REMOTE_ADDR": remote})


def assertion(key, *, aud=TOKEN_URL, sub="jwt-sync", iss=None, jti=None, exp_in=60, nbf=None, header=None,
              claims=None, algorithms=None) -> str:
    now = int(time.time())  # authlib checks exp/nbf against the real clock
    body = {"iss": iss or sub, "sub": sub, "aud": aud, "iat": now, "exp": now + exp_in,
            "jti": jti or uuid.uuid4().hex}
    if nbf is not None:
        body["nbf"] = nbf
    body.update(claims or {})
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(header or {"alg": "RS256", "kid": "jwt-sync-1"}, body, key, algorithms=algorithms)


def token_with_assertion(client, signed: str, remote="127.0.0.1", headers=None):
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
    return client.post("/oauth/token", data=data, headers=headers or {}, environ_base={"REMOTE_ADDR": remote})


def oauth_error(resp, status: int, error: str):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    assert resp.get_json()["error"] == error
    return resp


def unsigned(claims: dict, header: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc(header)}.{enc(claims)}."
