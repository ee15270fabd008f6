"""A workload identity issuer for tests, the way GitHub Actions or a Kubernetes API server is one: it signs JWTs
for workloads with its own keys (joserfc) and serves them at an OpenID discovery document and a JWKS endpoint
over HTTP on a free port. Nothing in govern's verification is replaced: govern fetches these keys over HTTP.

`mint(...)` makes a token; `rotate(keep_old=...)` makes a new signing key and publishes it (the next token is
signed with it); `jwks_requests` counts the JWKS fetches, so a test can see govern's cache and refetch limit.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class OidcIssuer:
    def __init__(self, algorithm: str = "RS256"):
        self.algorithm = algorithm
        self._lock = threading.Lock()
        self._keys: list[RSAKey] = [self._new_key()]
        self.jwks_requests = 0
        self.misbehave: str | None = None  # "huge" (a JWKS past any sane size), "redirect", "not_json"
        self._server = None
        self.port = 0

    @staticmethod
    def _new_key() -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks"

    @property
    def signing_key(self) -> RSAKey:
        return self._keys[-1]

    def jwks(self) -> dict:
        with self._lock:
            return {"keys": [k.as_dict(private=False) for k in self._keys]}

    def rotate(self, *, keep_old: bool = True) -> str:
        """A new signing key, published at once; the old one stays published while `keep_old`. Returns its kid."""
        key = self._new_key()
        with self._lock:
            self._keys = [*self._keys, key] if keep_old else [key]
        return str(key.kid)

    def mint(self, sub: str, aud: str | list[str], *, claims: dict[str, Any] | None = None, now: float | None = None,
             lifetime: int = 300, iat: float | None = None, jti: str | None = None, iss: str | None = None,
             key: RSAKey | None = None, header: dict | None = None, drop: tuple[str, ...] = ()) -> str:
        now = time.time() if now is None else now
        payload = {"iss": iss or self.url, "sub": sub, "aud": aud, "iat": int(iat if iat is not None else now),
                   "nbf": int(now) - 5, "exp": int(now) + lifetime, "jti": jti or secrets.token_urlsafe(12),
                   **(claims or {})}
        for name in drop:
            payload.pop(name, None)
        key = key or self.signing_key
        return jwt.encode({"alg": self.algorithm, "kid": key.kid, "typ": "JWT", **(header or {})}, payload, key,
                          algorithms=[self.algorithm])

    # --- HTTP -----------------------------------------------------------------------------------------
    def _app(self, environ, start_response):
        request = Request(environ)
        if request.path == "/.well-known/jwks":
            with self._lock:
                self.jwks_requests += 1
            if self.misbehave == "huge":
                return Response(json.dumps({"keys": [], "pad": "x" * 200_000}),
                                mimetype="application/json")(environ, start_response)
            if self.misbehave == "redirect":
                return Response("", status=302, headers={"Location": "http://169.254.169.254/"})(environ, start_response)
            if self.misbehave == "not_json":
                return Response("<html>", mimetype="text/html")(environ, start_response)
            body = self.jwks()
        elif request.path == "/.well-known/openid-configuration":
            body = {"issuer": self.url, "jwks_uri": self.jwks_url, "id_token_signing_alg_values_supported": [self.algorithm]}
        else:
            return Response("not found", status=404)(environ, start_response)
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)

    def start(self) -> OidcIssuer:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-oidc-issuer", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass
