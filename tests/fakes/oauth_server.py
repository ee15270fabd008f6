"""A fault-injecting upstream OAuth 2.0 authorization server for tests, built on authlib.

It plays "the real system" govern brokers tokens for (PRODUCT.md, "Real parts"): RFC 6749 client_credentials,
refresh_token with rotation (section 6; each use issues a new refresh token and revokes the old one),
authorization_code with PKCE (RFC 7636, S256 required) and the JWT bearer grant (RFC 7523 section 2.1,
the assertion verified with the subject's registered public key). Clients authenticate with
client_secret_basic, client_secret_post or private_key_jwt (RFC 7523 section 2.2).

RFC 7009 token revocation at `POST /oauth/revoke` (the client authenticates as at the token endpoint) really
invalidates the token: a revoked refresh token is refused by the refresh grant even within the grace period, and
revoking a refresh token also revokes the access tokens of the same client and user (section 2.1's SHOULD).
Faults injected for the grant "revoke" apply to it.

Like Okta and Auth0, it can keep a rotated refresh token valid for a grace period
(`refresh_grace_seconds`), which is what lets a client recover from a lost rotation response.

It counts calls per grant and injects faults into the next N calls (or all calls) of a grant: `delay`,
`429` (with Retry-After), `5xx`, `invalid_grant`, `invalid_client`, `drop_after_commit` (the grant runs and
its effects, such as a refresh-token rotation, are committed, then the connection is closed without an
answer) and `stall_after_commit` (committed, then the answer is held until `release()`).
State is guarded by one lock; the server runs threaded on a free port.

Control: call the methods directly, or over HTTP at `/_control/...` when the server runs in another process.
Protected resources: `GET /api/orders` and `GET /api/whoami` check the bearer token.
"""
from __future__ import annotations

import base64
import collections
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet
from werkzeug.serving import WSGIRequestHandler, make_server

PRIVATE_KEY_JWT = "private_key_jwt"


@dataclass
class FakeClient:
    client_id: str
    secrets: list[str] = field(default_factory=list, repr=False)  # any of them is accepted (rotation overlap)
    auth_method: str = "client_secret_basic"
    public_jwk: dict | None = None  # for private_key_jwt
    redirect_uris: list[str] = field(default_factory=list)
    scope: str = ""

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return any(secrets.compare_digest(client_secret, s) for s in self.secrets)

    def check_endpoint_auth_method(self, method, endpoint):
        if method == "none":
            return False
        return method == self.auth_method

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return True


@dataclass
class _Token:
    value: str = field(repr=False)
    client_id: str
    user: str | None
    scope: str
    expires_at: float
    revoked_at: float | None = None
    family: str = ""
    withdrawn: bool = False  # revoked through RFC 7009: refused at once, no grace period

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope


@dataclass
class _Code:
    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


@dataclass
class _Fault:
    kind: str
    grant: str | None
    remaining: int | None  # None: every call
    delay: float = 0.0
    status: int = 503
    retry_after: int = 7


class FakeUpstream:
    def __init__(self, *, access_token_ttl: int = 3600, refresh_grace_seconds: float = 0.0,
                 rotate_refresh_tokens: bool = True):
        self.access_token_ttl = access_token_ttl
        self.client_ttls: dict[str, int] = {}  # per-client access-token lifetime, overriding access_token_ttl
        self.refresh_grace_seconds = refresh_grace_seconds
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.lock = threading.RLock()
        self.clients: dict[str, FakeClient] = {}
        self.user_keys: dict[str, dict] = {}  # JWT bearer: subject -> public JWK
        self.access_tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Token] = {}
        self.codes: dict[str, _Code] = {}
        self.forms: list[dict[str, list[str]]] = []  # the token requests' form fields, without secrets
        self.revocations: list[dict[str, Any]] = []  # RFC 7009 requests that revoked something: client, hint
        self.used_jti: set[str] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.committed: collections.Counter[str] = collections.Counter()
        self.faults: list[_Fault] = []
        self._stall = threading.Event()
        self._server = None
        self._thread = None
        self.port: int | None = None
        self.app = self._build_app()

    # --- set-up -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    @property
    def revocation_url(self) -> str:
        return f"{self.url}/oauth/revoke"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth/authorize"

    def register_client(self, client_id: str, *, secret: str | list[str] | None = None,
                        auth_method: str = "client_secret_basic", public_jwk: dict | None = None,
                        redirect_uris: list[str] | tuple[str, ...] = (), scope: str = "orders.read orders.write") -> FakeClient:
        with self.lock:
            client = FakeClient(client_id, [secret] if isinstance(secret, str) else list(secret or []), auth_method,
                                public_jwk, list(redirect_uris), scope)
            self.clients[client_id] = client
            return client

    def register_user_key(self, subject: str, public_jwk: dict) -> None:
        with self.lock:
            self.user_keys[subject] = public_jwk

    def issue_refresh_token(self, client_id: str, user: str = "alice", scope: str = "orders.read") -> str:
        """Seed a refresh token, as if a user had connected earlier."""
        with self.lock:
            value = "rt_" + secrets.token_urlsafe(24)
            self.refresh_tokens[value] = _Token(value, client_id, user, scope, time.time() + 86400 * 30,
                                                family=value)
            return value

    def refresh_token_valid(self, value: str) -> bool:
        with self.lock:
            return self._rt_usable(self.refresh_tokens.get(value))

    def access_token_valid(self, value: str) -> bool:
        with self.lock:
            tok = self.access_tokens.get(value)
            return bool(tok and tok.expires_at > time.time())

    def revoke_access_tokens(self) -> int:
        """Revoke every access token issued so far (the resource endpoints answer 401 to them)."""
        with self.lock:
            count = len(self.access_tokens)
            self.access_tokens.clear()
            return count

    # --- faults and counters --------------------------------------------------------------------------

    def inject(self, kind: str, *, grant: str | None = None, times: int | None = 1, delay: float = 0.0,
               status: int = 503, retry_after: int = 7) -> None:
        """Fault the next `times` calls of `grant` (any grant when None); `times=None` faults every call."""
        with self.lock:
            self.faults.append(_Fault(kind, grant, times, delay, status, retry_after))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
        self._stall.set()

    def release(self) -> None:
        """Let stalled answers (`stall_after_commit`) go."""
        self._stall.set()

    def count(self, grant: str | None = None) -> int:
        with self.lock:
            return sum(self.counts.values()) if grant is None else self.counts[grant]

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.committed.clear()

    def _take_fault(self, grant: str) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.grant in (None, grant) and (fault.remaining is None or fault.remaining > 0):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def _rt_usable(self, tok: _Token | None) -> bool:
        if tok is None or tok.withdrawn or tok.expires_at <= time.time():
            return False
        if tok.revoked_at is None:
            return True
        return time.time() - tok.revoked_at <= self.refresh_grace_seconds

    # --- the Flask app ----------------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("fake-upstream")
        upstream = self

        def query_client(client_id):
            with upstream.lock:
                return upstream.clients.get(client_id)

        def save_token(token, req):
            with upstream.lock:
                client_id = req.client.client_id if req.client else ""
                user = getattr(req, "user", None)
                scope = token.get("scope", "")
                upstream.access_tokens[token["access_token"]] = _Token(
                    token["access_token"], client_id, user, scope, time.time() + token["expires_in"])
                if "refresh_token" in token:
                    old = getattr(req, "refresh_token", None)
                    family = old.family if isinstance(old, _Token) else token["refresh_token"]
                    upstream.refresh_tokens[token["refresh_token"]] = _Token(
                        token["refresh_token"], client_id, user, scope, time.time() + 86400 * 30, family=family)

        def generate(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
            token = {"token_type": "Bearer", "access_token": "at_" + secrets.token_urlsafe(24),
                     "expires_in": upstream.client_ttls.get(client.client_id, upstream.access_token_ttl)}
            if scope:
                token["scope"] = scope
            if include_refresh_token:
                token["refresh_token"] = "rt_" + secrets.token_urlsafe(24)
            return token

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
        server.register_token_generator("default", generate)

        class PrivateKeyJWTAuth(JWTBearerClientAssertion):
            CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

            def get_audiences(self):
                return [upstream.token_url, upstream.url]

            def validate_jti(self, claims, jti):
                with upstream.lock:
                    if jti in upstream.used_jti:
                        return False
                    upstream.used_jti.add(jti)
                    return True

            def resolve_client_public_key(self, client):
                if not client.public_jwk:
                    raise InvalidClientError(description="no key registered")
                return KeySet.import_key_set({"keys": [client.public_jwk]})

        server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJWTAuth())
        methods = ["client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT]

        class ClientCredentials(grants.ClientCredentialsGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = methods

        class RefreshToken(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = methods
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token):
                with upstream.lock:
                    tok = upstream.refresh_tokens.get(refresh_token)
                    return tok if upstream._rt_usable(tok) else None

            def authenticate_user(self, refresh_token):
                return refresh_token.user

            def issue_token(self, user, refresh_token):
                token = self.generate_token(scope=refresh_token.scope, user=user,
                                            include_refresh_token=upstream.rotate_refresh_tokens)
                return token

            def revoke_old_credential(self, refresh_token):
                if not upstream.rotate_refresh_tokens:
                    return
                with upstream.lock:
                    if refresh_token.revoked_at is None:
                        refresh_token.revoked_at = time.time()

        class AuthorizationCode(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = methods

            def save_authorization_code(self, code, req):
                with upstream.lock:
                    upstream.codes[code] = _Code(code, req.client.client_id, req.payload.redirect_uri,
                                                 req.payload.scope or "", req.user,
                                                 req.payload.data.get("code_challenge"),
                                                 req.payload.data.get("code_challenge_method"))

            def query_authorization_code(self, code, client):
                with upstream.lock:
                    item = upstream.codes.get(code)
                    return item if item and item.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                with upstream.lock:
                    upstream.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class JWTBearer(JWTBearerGrant):
            def get_audiences(self):
                return [upstream.token_url, upstream.url]

            def resolve_issuer_client(self, issuer):
                with upstream.lock:
                    return upstream.clients.get(issuer)

            def resolve_client_public_key(self, client):
                # RFC 7523 section 3: the assertion is signed by the key of the subject it speaks for.
                sub = getattr(request, "_jwt_sub", None)
                with upstream.lock:
                    jwk = upstream.user_keys.get(sub)
                if jwk is None:
                    raise InvalidClientError(description="no key registered for the subject")
                return KeySet.import_key_set({"keys": [jwk]})

            def authenticate_user(self, subject):
                with upstream.lock:
                    return subject if subject in upstream.user_keys else None

            def has_granted_permission(self, client, user):
                return True

        server.register_grant(ClientCredentials)
        server.register_grant(RefreshToken)
        server.register_grant(AuthorizationCode, [CodeChallenge(required=True)])
        server.register_grant(JWTBearer)

        class Revocation(RevocationEndpoint):
            CLIENT_AUTH_METHODS = methods

            def query_token(self, token_string, token_type_hint):
                with upstream.lock:
                    if token_type_hint != "refresh_token" and token_string in upstream.access_tokens:
                        return upstream.access_tokens[token_string]
                    return upstream.refresh_tokens.get(token_string) or upstream.access_tokens.get(token_string)

            def revoke_token(self, token, req):
                with upstream.lock:
                    if upstream.access_tokens.get(token.value) is token:
                        del upstream.access_tokens[token.value]
                        kind = "access_token"
                    else:
                        token.withdrawn = True
                        kind = "refresh_token"
                        for value, tok in list(upstream.access_tokens.items()):
                            if tok.client_id == token.client_id and tok.user == token.user:
                                del upstream.access_tokens[value]
                    upstream.revocations.append({"client_id": token.client_id, "user": token.user, "kind": kind,
                                                 "hint": req.form.get("token_type_hint")})

        server.register_endpoint(Revocation)

        @app.post("/oauth/revoke")
        def revoke():
            with upstream.lock:
                upstream.counts["revoke"] += 1
            fault = upstream._take_fault("revoke")
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.kind == "5xx":
                    return jsonify(error="server_error"), fault.status
                if fault.kind == "429":
                    return jsonify(error="rate_limited"), 429, {"Retry-After": str(fault.retry_after)}
            return server.create_endpoint_response(Revocation.ENDPOINT_NAME)

        @app.post("/oauth/token")
        def token():
            grant = request.form.get("grant_type", "")
            if grant == JWTBearerGrant.GRANT_TYPE:
                grant = "jwt_bearer"
                request._jwt_sub = _unverified_sub(request.form.get("assertion", ""))
            with upstream.lock:
                upstream.counts[grant] += 1
                # What arrived, repeated parameters kept (RFC 8707 `resource`); secret fields left out.
                upstream.forms.append({k: v for k, v in request.form.to_dict(flat=False).items()
                                       if k not in ("client_secret", "client_assertion", "assertion", "refresh_token")})
            fault = upstream._take_fault(grant)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.kind == "429":
                    return jsonify(error="rate_limited"), 429, {"Retry-After": str(fault.retry_after)}
                if fault.kind == "5xx":
                    return jsonify(error="server_error"), fault.status
                if fault.kind in ("invalid_grant", "invalid_client"):
                    return jsonify(error=fault.kind), 400 if fault.kind == "invalid_grant" else 401
            response = server.create_token_response()
            if response.status_code == 200:
                with upstream.lock:
                    upstream.committed[grant] += 1
            if fault is not None and fault.kind == "drop_after_commit":
                sock = request.environ.get("werkzeug.socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            if fault is not None and fault.kind == "stall_after_commit":
                upstream._stall.wait(60)
            return response

        @app.get("/oauth/authorize")
        def authorize():
            # The resource owner is `login_hint` (default "alice"): consent is automatic in the fake.
            user = request.args.get("login_hint", "alice")
            return server.create_authorization_response(grant_user=user)

        @app.get("/api/orders")
        def orders():
            tok = _bearer(upstream)
            if tok is None:
                return jsonify(error="invalid_token"), 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return jsonify(orders=[{"id": 1, "total": 10}], user=tok.user, scope=tok.scope)

        @app.get("/api/whoami")
        def whoami():
            tok = _bearer(upstream)
            if tok is None:
                return jsonify(error="invalid_token"), 401
            return jsonify(client_id=tok.client_id, user=tok.user, scope=tok.scope)

        @app.post("/_control/faults")
        def control_faults():
            body = request.get_json(force=True)
            upstream.inject(body["kind"], grant=body.get("grant"), times=body.get("times", 1),
                            delay=body.get("delay", 0.0), status=body.get("status", 503),
                            retry_after=body.get("retry_after", 7))
            return jsonify(ok=True)

        @app.delete("/_control/faults")
        def control_clear():
            upstream.clear_faults()
            return jsonify(ok=True)

        @app.get("/_control/counts")
        def control_counts():
            with upstream.lock:
                return jsonify(counts=dict(upstream.counts), committed=dict(upstream.committed))

        return app

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stall.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # the fake's access log would only be noise in test output
        pass


def _bearer(upstream: FakeUpstream) -> _Token | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    with upstream.lock:
        tok = upstream.access_tokens.get(value.strip())
        return tok if tok and tok.expires_at > time.time() else None


def _unverified_sub(assertion: str) -> str | None:
    """The subject named in an assertion, to pick the key that must have signed it (verified afterwards)."""
    try:
        payload = assertion.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload)).get("sub")
    except (IndexError, ValueError, AttributeError):
        return None


def rsa_keypair() -> tuple[str, dict]:
    """A fresh RSA key: (private PEM, public JWK) for private_key_jwt and JWT bearer tests."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc.jwk import RSAKey

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = RSAKey.import_key(pem).as_dict(private=False)
    return pem, public


def _main() -> None:  # pragma: no cover - `python -m tests.fakes.oauth_server` for manual runs and subprocesses
    upstream = FakeUpstream().start()
    print(upstream.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    _main()


__all__: list[Any] = ["FakeUpstream", "FakeClient", "rsa_keypair"]
