"""The sandbox's HTTP side: an OAuth 2.0 authorization server and a resource API, built with authlib.

Token endpoint `POST /oauth/token` (RFC 6749 section 3.2), client authentication client_secret_basic or
client_secret_post (section 2.3.1), grants:
- client_credentials (section 4.4);
- refresh_token (section 6) with rotation: each use answers a new refresh token and revokes the old one,
  as OAuth 2.0 Security BCP (RFC 9700 section 4.14.2) asks of public-facing servers.
Resource API, answered as JSON to a valid bearer access token (RFC 6750 section 2.1) or to the API key in
the `X-API-Key` header: `GET /api/orders`, `GET /api/items`, `GET /api/items/<id>`, `GET /api/whoami`.

Every request is logged as one line through the `log` callable: method, path, grant or credential kind,
client id, outcome. Never a secret: no client secret, token or API key value is ever logged.
State lives in memory under one lock; a restart forgets every token (the sandbox stores fresh secrets into
govern at each start).
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from flask import Flask, g, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

from govern.sandbox.provision import SandboxSecrets

ACCESS_TOKEN_SECONDS = 900
REFRESH_TOKEN_SECONDS = 30 * 86400
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
ORDERS = [{"id": "SO-1001", "customer": "Acme GmbH", "total": 1250.0, "status": "confirmed"},
          {"id": "SO-1002", "customer": "Globex", "total": 310.5, "status": "shipped"}]
ITEMS = [{"id": "ITEM-1", "name": "Widget", "in_stock": 42}, {"id": "ITEM-2", "name": "Gadget", "in_stock": 0}]


@dataclass
class _Client:
    """authlib's ClientMixin, for the one client govern uses."""
    client_id: str
    secret: str = field(repr=False)
    scope: str

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        if not scope:
            return self.scope
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret.encode(), self.secret.encode())

    def check_endpoint_auth_method(self, method, endpoint):
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type in ("client_credentials", "refresh_token")


@dataclass
class _Token:
    """authlib's TokenMixin for refresh tokens; access tokens use it too."""
    value: str = field(repr=False)
    client_id: str
    user: str | None
    scope: str
    expires_at: float
    revoked: bool = False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def usable(self) -> bool:
        return not self.revoked and self.expires_at > time.time()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # the sandbox logs its own line per request, without the query
        pass


class SandboxServer:
    """The authorization server and the resource API on `host:port`, in a daemon thread (`start`/`stop`)."""

    def __init__(self, sandbox_secrets: SandboxSecrets, *, host: str = "127.0.0.1", port: int = 8900,
                 log: Callable[[str], None] = print):
        self.secrets = sandbox_secrets
        self.host, self.port = host, port
        self.log = log
        self.lock = threading.Lock()
        self.client = _Client(sandbox_secrets.client_id, sandbox_secrets.client_secret.reveal(),
                              " ".join(sandbox_secrets.scopes))
        self.access_tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Token] = {}
        self.refresh_tokens[sandbox_secrets.refresh_token.reveal()] = _Token(
            sandbox_secrets.refresh_token.reveal(), self.client.client_id, sandbox_secrets.refresh_token_user,
            self.client.scope, time.time() + REFRESH_TOKEN_SECONDS)
        self.app = self._build_app()
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Bind now (an OSError if the port is taken), then serve in a daemon thread."""
        self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="govern-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait(self) -> None:
        """Block until the server stops (or Ctrl-C interrupts the wait)."""
        if self._thread is not None:
            self._thread.join()

    # --- the Flask app -------------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("govern-sandbox")
        sandbox = self

        def query_client(client_id):
            return sandbox.client if client_id == sandbox.client.client_id else None

        def save_token(token, req):
            with sandbox.lock:
                user = getattr(req, "user", None)
                scope = token.get("scope", "")
                sandbox.access_tokens[token["access_token"]] = _Token(
                    token["access_token"], req.client.client_id, user, scope, time.time() + token["expires_in"])
                if "refresh_token" in token:
                    sandbox.refresh_tokens[token["refresh_token"]] = _Token(
                        token["refresh_token"], req.client.client_id, user, scope, time.time() + REFRESH_TOKEN_SECONDS)

        def generate(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
            token = {"token_type": "Bearer", "access_token": "sbx_at_" + secrets.token_urlsafe(24),
                     "expires_in": ACCESS_TOKEN_SECONDS}
            if scope:
                token["scope"] = scope
            if include_refresh_token:
                token["refresh_token"] = "sbx_rt_" + secrets.token_urlsafe(24)
            return token

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
        server.register_token_generator("default", generate)

        class ClientCredentials(grants.ClientCredentialsGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

        class RefreshToken(grants.RefreshTokenGrant):
            """RFC 6749 section 6, rotating: the answer carries a new refresh token, the old one is revoked."""
            TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token):
                with sandbox.lock:
                    tok = sandbox.refresh_tokens.get(refresh_token)
                    return tok if tok is not None and tok.usable() else None

            def authenticate_user(self, refresh_token):
                return refresh_token.user

            def revoke_old_credential(self, refresh_token):
                with sandbox.lock:
                    refresh_token.revoked = True

        server.register_grant(ClientCredentials)
        server.register_grant(RefreshToken)

        @app.before_request
        def _start():
            g.auth = "-"

        @app.after_request
        def _log(response):
            outcome = response.status_code
            error = g.get("error")
            sandbox.log(f"sandbox: {request.method} {request.path} {g.auth} -> {outcome}"
                        + (f" {error}" if error else ""))
            return response

        @app.post("/oauth/token")
        def token():
            grant = request.form.get("grant_type", "-")
            client_id = (request.authorization.username if request.authorization else None) \
                or request.form.get("client_id", "-")
            g.auth = f"grant_type={grant} client_id={client_id}"
            response = server.create_token_response()
            if response.status_code != 200:
                try:
                    g.error = (response.get_json(silent=True) or {}).get("error")
                except Exception:  # noqa: BLE001 - a log detail only
                    g.error = None
            elif grant == "refresh_token":
                g.error = "(refresh token rotated)"
            return response

        @app.get("/")
        def index():
            return jsonify(name="govern sandbox", token_endpoint=f"{sandbox.url}/oauth/token",
                           api=["/api/orders", "/api/items", "/api/items/<id>", "/api/whoami"],
                           note="development only; see README.md, Try it")

        @app.get("/api/orders")
        def orders():
            caller = _caller(sandbox)
            if caller is None:
                return _unauthorized()
            return jsonify(orders=ORDERS, caller=caller)

        @app.get("/api/items")
        def items():
            caller = _caller(sandbox)
            if caller is None:
                return _unauthorized()
            return jsonify(items=ITEMS, caller=caller)

        @app.get("/api/items/<item_id>")
        def item(item_id):
            caller = _caller(sandbox)
            if caller is None:
                return _unauthorized()
            found = next((i for i in ITEMS if i["id"] == item_id), None)
            if found is None:
                return jsonify(error="not_found", id=item_id), 404
            return jsonify(item=found, caller=caller)

        @app.get("/api/whoami")
        def whoami():
            caller = _caller(sandbox)
            if caller is None:
                return _unauthorized()
            return jsonify(caller)

        return app


def _caller(sandbox: SandboxServer) -> dict | None:
    """Who is calling: a bearer access token (RFC 6750) or the API key; None when neither is valid."""
    key = request.headers.get("X-API-Key")
    if key is not None:
        if secrets.compare_digest(key.encode(), sandbox.secrets.api_key.reveal().encode()):
            g.auth = "api_key=valid"
            return {"authenticated_by": "api_key"}
        g.auth = "api_key=wrong"
        return None
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        g.auth = "no credential"
        return None
    with sandbox.lock:
        tok = sandbox.access_tokens.get(value.strip())
    if tok is None or not tok.usable():
        g.auth = "bearer=invalid"
        return None
    g.auth = f"bearer=valid client_id={tok.client_id}" + (f" user={tok.user}" if tok.user else "")
    return {"authenticated_by": "bearer_token", "client_id": tok.client_id, "user": tok.user, "scope": tok.scope}


def _unauthorized():
    g.error = "invalid_token"
    return jsonify(error="invalid_token"), 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
