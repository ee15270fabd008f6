"""govern.client against a small stand-in for govern's HTTP surface (the real endpoints belong to the authz
and proxy work) and the fake upstream. The stand-in is faked at the HTTP level, in this test only."""
from __future__ import annotations

import collections
import threading

import pytest
import requests
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from govern.client import GovernAuth, GovernClientError, GovernProxySession
from tests.fakes.oauth_server import rsa_keypair


class StandIn:
    """/oauth/token, /api/v1/named-credentials/<n>/token and .../proxy/<path>, counting calls."""

    def __init__(self, upstream, public_jwk=None):
        self.upstream = upstream
        self.public_jwk = public_jwk
        self.calls = collections.Counter()
        self.issued: set[str] = set()
        self.govern_expires_in = 600
        self.upstream_expires_in = 600
        self.deny = False
        self.reject_next_bearer = False
        app = Flask("govern-stand-in")

        @app.post("/oauth/token")
        def token():
            self.calls["govern_token"] += 1
            if request.authorization:
                ok = (request.authorization.username, request.authorization.password) == ("erp-sync", "s3cret")
            else:
                ok = self._assertion_ok(request.form.get("client_assertion", ""))
            if not ok or request.form.get("grant_type") != "client_credentials":
                return jsonify(error="invalid_client"), 401
            value = f"gv_{len(self.issued)}"
            self.issued.add(value)
            return jsonify(access_token=value, token_type="Bearer", expires_in=self.govern_expires_in)

        def bearer_ok():
            value = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.reject_next_bearer:
                self.reject_next_bearer = False
                self.issued.discard(value)
            return value in self.issued

        @app.post("/api/v1/named-credentials/<name>/token")
        def upstream_token(name):
            self.calls["upstream_token"] += 1
            if not bearer_ok():
                return jsonify(code="unauthorized", status=401), 401
            if self.deny:
                return jsonify(code="access_denied", status=403, rule="deny:scope_outside_grant",
                               detail="orders.write is not granted"), 403
            scope = (request.get_json(silent=True) or {}).get("scope", "")
            tok = requests.post(self.upstream.token_url, data={"grant_type": "client_credentials", "scope": scope},
                                auth=("up-client", "up-secret")).json()
            return jsonify(access_token=tok["access_token"], token_type="Bearer",
                           expires_in=self.upstream_expires_in, scope=scope)

        @app.route("/api/v1/named-credentials/<name>/proxy/<path:path>", methods=["GET", "POST"])
        def proxy(name, path):
            self.calls["proxy"] += 1
            if not bearer_ok():
                return jsonify(code="unauthorized"), 401
            tok = requests.post(self.upstream.token_url, data={"grant_type": "client_credentials"},
                                auth=("up-client", "up-secret")).json()
            resp = requests.request(request.method, f"{self.upstream.url}/api/{path}",
                                    headers={"Authorization": f"Bearer {tok['access_token']}"})
            return resp.content, resp.status_code, {"Content-Type": resp.headers["Content-Type"]}

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _assertion_ok(self, assertion: str) -> bool:
        from joserfc import jwt
        from joserfc.jwk import RSAKey

        if not assertion or not self.public_jwk:
            return False
        try:
            tok = jwt.decode(assertion, RSAKey.import_key(self.public_jwk))
        except Exception:  # noqa: BLE001
            return False
        return tok.claims.get("sub") == "erp-sync" and tok.claims.get("aud") == f"{self.url}/oauth/token"


class Clock:
    def __init__(self):
        import time

        self.t = time.time()

    def __call__(self):
        return self.t


@pytest.fixture
def stand_in(fake_upstream):
    fake_upstream.register_client("up-client", secret="up-secret", scope="orders.read")
    s = StandIn(fake_upstream)
    yield s
    s.server.shutdown()


def test_auth_injects_the_upstream_token_and_caches_both(stand_in, fake_upstream):
    auth = GovernAuth(stand_in.url, "erp-sync", "s3cret", named_credential="erp-api", scopes=["orders.read"])
    for _ in range(3):
        resp = requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
        assert resp.status_code == 200 and resp.json()["orders"]
    assert stand_in.calls == {"govern_token": 1, "upstream_token": 1}
    assert "s3cret" not in repr(auth) and "s3cret" not in repr(auth.tokens)


def test_tokens_are_renewed_before_they_expire(stand_in, fake_upstream):
    clock = Clock()
    stand_in.govern_expires_in = stand_in.upstream_expires_in = 60
    auth = GovernAuth(stand_in.url, "erp-sync", "s3cret", named_credential="erp-api", skew=30, clock=clock)
    requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    clock.t += 29  # 31 s left: fresh
    requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    assert stand_in.calls == {"govern_token": 1, "upstream_token": 1}
    clock.t += 2  # 29 s left: inside the skew
    requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    assert stand_in.calls == {"govern_token": 2, "upstream_token": 2}


def test_a_401_from_the_upstream_is_retried_once_with_a_fresh_token(stand_in, fake_upstream):
    auth = GovernAuth(stand_in.url, "erp-sync", "s3cret", named_credential="erp-api")
    requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    fake_upstream.access_tokens.clear()  # the upstream revoked every token
    resp = requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    assert resp.status_code == 200 and len(resp.history) == 1 and resp.history[0].status_code == 401
    assert stand_in.calls["upstream_token"] == 2


def test_a_401_from_govern_gets_a_new_govern_token_once(stand_in, fake_upstream):
    clock = Clock()
    stand_in.upstream_expires_in = 60
    auth = GovernAuth(stand_in.url, "erp-sync", "s3cret", named_credential="erp-api", clock=clock)
    requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    clock.t += 45  # the upstream token needs renewing; govern meanwhile forgot our govern token
    stand_in.reject_next_bearer = True
    assert requests.get(f"{fake_upstream.url}/api/orders", auth=auth).status_code == 200
    assert stand_in.calls == {"govern_token": 2, "upstream_token": 3}


def test_denials_surface_as_errors_naming_the_rule(stand_in, fake_upstream):
    stand_in.deny = True
    auth = GovernAuth(stand_in.url, "erp-sync", "s3cret", named_credential="erp-api", scopes=["orders.write"])
    with pytest.raises(GovernClientError) as err:
        requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    assert (err.value.status, err.value.code, err.value.rule) == (403, "access_denied", "deny:scope_outside_grant")


def test_wrong_client_secret_is_an_error(stand_in, fake_upstream):
    auth = GovernAuth(stand_in.url, "erp-sync", "wrong", named_credential="erp-api")
    with pytest.raises(GovernClientError) as err:
        requests.get(f"{fake_upstream.url}/api/orders", auth=auth)
    assert (err.value.status, err.value.code) == (401, "invalid_client")


def test_private_key_jwt_client_authentication(stand_in, fake_upstream):
    pem, jwk = rsa_keypair()
    stand_in.public_jwk = jwk
    auth = GovernAuth(stand_in.url, "erp-sync", private_key=pem, named_credential="erp-api")
    assert requests.get(f"{fake_upstream.url}/api/orders", auth=auth).status_code == 200


def test_proxy_session_calls_through_govern(stand_in):
    session = GovernProxySession(stand_in.url, "erp-sync", "s3cret", named_credential="erp-api")
    resp = session.get("/orders")
    assert resp.status_code == 200 and resp.json()["orders"]
    stand_in.reject_next_bearer = True
    assert session.get("orders").status_code == 200
    assert stand_in.calls == {"govern_token": 2, "proxy": 3}


def test_exactly_one_credential_is_required():
    with pytest.raises(ValueError):
        GovernAuth("http://x", "a", named_credential="n")
