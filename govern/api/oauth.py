"""govern's OAuth 2.0 endpoints: `POST /oauth/token` (RFC 6749 client_credentials, and RFC 8693 token exchange
for upstream tokens: govern.broker.token_exchange), `GET /oauth/jwks.json` (RFC 7517) and the authorization
server metadata `GET /.well-known/oauth-authorization-server` (RFC 8414).

Errors on /oauth/token are RFC 6749 section 5.2 JSON (`{"error", "error_description"}`), never
problem+json. Every issuance and refusal is in the decision log (action `oauth_token`) before the answer
is sent; when it cannot be recorded the answer is 503 temporarily_unavailable.
"""
from __future__ import annotations

import logging
import time
import json

from typing import Any, Literal

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from govern.api.edge import basic_credentials_readable
from govern.api.problems import database_outage_as_error
from govern.api.spec import FORM, Responses, api, openapi_extra
from govern.broker.decision_log import DecisionLogUnavailable
from govern.errors import GovernError
from govern.api import oauth_server
from govern.broker import token_exchange
from govern.api.oauth_server import GovernAuthorizationServer, token_decision
from govern.store.seen_assertions import CacheSeenAssertions, DatabaseSeenAssertions
from govern.broker.client_authentication import already_limited, claimed_client_id
from govern.api.conventions import SECURITY_HEADERS, log_request
from govern.logs import CORRELATION_HEADER, accept_correlation_id, bind_correlation_id
from govern.broker.signing_keys import ALGORITHM
from govern.ops.observe import operation

bp = Blueprint("oauth", __name__)
log = logging.getLogger("govern.oauth")
SLOW_DOWN = "too many attempts; retry after the number of seconds in Retry-After"


class TokenForm(BaseModel):
    """RFC 6749 section 4.4.2 (client_credentials), with client_secret_basic, private_key_jwt (RFC 7523) or a
    federated user's trusted issuer token (docs/federation.md); or RFC 8693 token exchange of a govern access
    token for an upstream token of a named credential (docs/token-exchange.md)."""

    grant_type: Literal["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
    scope: str | None = Field(None, description="space-delimited; within the user's allowed scopes")
    client_id: str | None = Field(None, description="a federated integration user's id (with client_assertion)")
    client_assertion_type: Literal["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"] | None = None
    client_assertion: str | None = Field(None, description="private_key_jwt (RFC 7523), or the trusted issuer's "
                                                              "token of a federated user", json_schema_extra={"writeOnly": True})
    subject_token: str | None = Field(None, description="token exchange: the caller's govern access token",
                                      json_schema_extra={"writeOnly": True})
    subject_token_type: Literal["urn:ietf:params:oauth:token-type:access_token",
                                "urn:ietf:params:oauth:token-type:jwt"] | None = None
    requested_token_type: Literal["urn:ietf:params:oauth:token-type:access_token"] | None = None
    audience: str | None = Field(None, description="token exchange: the named credential's id")
    resource: str | None = Field(None, description="token exchange: the named credential's URL, "
                                                   "<public URL>/api/v1/named-credentials/<id> (RFC 8707)")


class AccessToken(BaseModel):
    """A short-lived, scoped access token: govern's (a JWT signed by /oauth/jwks.json), or, for a token exchange,
    the upstream token of the named credential with `issued_token_type` (RFC 8693 section 2.2.1)."""

    access_token: str
    token_type: str = Field(description="Bearer for govern's tokens; the upstream's type for an exchange")
    expires_in: int | None = None
    scope: str | None = None
    issued_token_type: Literal["urn:ietf:params:oauth:token-type:access_token"] | None = None


class OAuthError(BaseModel):
    """RFC 6749 section 5.2 error."""

    error: Literal["invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                   "unsupported_grant_type", "invalid_scope", "invalid_target", "server_error",
                   "temporarily_unavailable", "slow_down"]
    error_description: str | None = None


class JWKSet(BaseModel):
    """RFC 7517 section 5."""

    keys: list[dict[str, Any]]


class ServerMetadata(BaseModel):
    """RFC 8414 section 2."""

    model_config = ConfigDict(extra="allow")
    issuer: str
    token_endpoint: str
    jwks_uri: str


_OAUTH_ERROR = (OAuthError, "RFC 6749 section 5.2 error")


def _source_ip() -> str:
    services = current_app.extensions["govern"]
    return services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For"))


def _server():
    server = current_app.extensions.get("govern.oauth_server")
    if server is None:
        services = current_app.extensions["govern"]
        # Single-use assertions across processes: in Redis when configured, else in the shared database.
        seen = (CacheSeenAssertions(services.cache, services.clock) if services.cache.kind == "redis"
                else DatabaseSeenAssertions(services.engine, services.clock))
        server = GovernAuthorizationServer(services, _source_ip, rate_limits=services.rate_limits,
                                           seen_assertions=seen)
        current_app.extensions["govern.oauth_server"] = server
    return server


def _slow_down(retry_after: int):
    response = jsonify(error="slow_down", error_description=SLOW_DOWN)
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


class TokenEdge:
    """WSGI middleware in front of Flask: a `POST /oauth/token` from an address (or for a client id and
    address) this process already knows to be over a failure limit is answered 429 `slow_down` here, with
    no Flask request, no call to the rate-limit store and no hash (govern.ratelimit keeps what it found
    until the window ends). It does what the Flask hooks do for every response: the correlation id, the
    security headers and the request log line. Every other request goes on to `inner`."""

    def __init__(self, inner, services):
        self.inner = inner
        self.services = services

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/oauth/token" or environ.get("REQUEST_METHOD") != "POST":
            return self.inner(environ, start_response)
        services = self.services
        address = services.authenticator.source_ip(environ.get("REMOTE_ADDR") or "",
                                                   environ.get("HTTP_X_FORWARDED_FOR"))
        known = already_limited(services.rate_limits,
                                claimed_client_id({"Authorization": environ.get("HTTP_AUTHORIZATION")}), address)
        if known is None:
            return self.inner(environ, start_response)
        return self._slow_down(environ, start_response, known.retry_after)

    @staticmethod
    def _slow_down(environ, start_response, retry_after: int):
        started = time.perf_counter()
        correlation_id = accept_correlation_id(environ.get("HTTP_X_CORRELATION_ID"))
        bind_correlation_id(correlation_id)
        body = json.dumps({"error": "slow_down", "error_description": SLOW_DOWN}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Retry-After", str(retry_after)), (CORRELATION_HEADER, correlation_id), *SECURITY_HEADERS]
        start_response("429 Too Many Requests", headers)
        log_request("POST", "/oauth/token", 429, started, None)
        return [body]


@bp.post("/oauth/token")
@api.validate(resp=Responses(HTTP_200=(AccessToken, AccessToken.__doc__), HTTP_400=_OAUTH_ERROR,
                             HTTP_401=_OAUTH_ERROR, HTTP_429=_OAUTH_ERROR, HTTP_503=_OAUTH_ERROR),
              security=[{"clientSecretBasic": []}, {}], operation_id="issueAccessToken")
# authlib reads the form (RFC 6749 errors, not problem+json): the model describes it
@openapi_extra(requestBody={"required": True, "content": {FORM: {"schema": TokenForm.model_json_schema()}}})
def token():
    """Issue a govern access token (RFC 6749 client_credentials grant)

    The issuance or refusal is recorded in the decision log before the answer goes out.

    Requests the rate limits refuse (429 slow_down) are answered before anything is parsed or hashed and are
    not recorded one by one, so that a flood can neither burn CPU nor fill the decision log; they are counted
    by the rate limiter and logged by it."""
    services = current_app.extensions["govern"]
    if not basic_credentials_readable(request.headers.get("Authorization")):
        # authlib would fail on credentials that are not base64 of UTF-8 (RFC 7617 section 2) with a 500
        return (jsonify(error="invalid_client", error_description="the Basic credentials are not base64 of UTF-8"),
                401, {"WWW-Authenticate": 'Basic realm="govern"'})
    try:
        # Per source address, before anything is parsed, loaded or hashed (a guesser this process already
        # refused does not get here: TokenEdge answers it before Flask).
        with database_outage_as_error():
            verdict = services.rate_limits.hit("token_requests", _source_ip())
        if not verdict.allowed:
            return _slow_down(verdict.retry_after)
    except GovernError as exc:
        log.error("token request not rate-checked", extra={"code": exc.code})
        return jsonify(error="temporarily_unavailable", error_description=exc.detail), 503, {"Retry-After": "5"}
    started = time.perf_counter()
    grant_type = request.form.get("grant_type")
    if not grant_type:
        response = jsonify(error="invalid_request", error_description="grant_type is required")
        response.status_code = 400
    else:
        try:
            with database_outage_as_error():  # 503 temporarily_unavailable, in RFC 6749's format
                response = _exchange(services) if grant_type == token_exchange.GRANT_TYPE else \
                    _server().create_token_response()
        except GovernError as exc:
            log.error("token issuance failed", extra={"code": exc.code})
            status = 503 if exc.status == 503 else 500
            error = "temporarily_unavailable" if status == 503 else "server_error"
            response = jsonify(error=error, error_description=exc.detail)
            response.status_code = status
            if status == 503:
                response.headers.update(exc.headers)
    try:
        _record(response, grant_type or "", started)
    except GovernError as exc:
        log.error("token request not recorded", extra={"code": exc.code})
        if response.status_code < 500:  # no token and no refusal goes out unrecorded; a failure stays as it is
            response = jsonify(error="temporarily_unavailable", error_description=DecisionLogUnavailable.title)
            response.status_code = 503
            response.headers["Retry-After"] = "5"
    return response


def _exchange(services):
    """RFC 8693 (govern.broker.token_exchange): the same use case as the upstream token endpoint."""
    fields: dict = {}
    try:
        parsed = token_exchange.parse_exchange(request.form.to_dict(flat=False), services.settings.public_url)
        name = parsed.named_credential
        # Refusals become RFC 8693 errors outside the observed operation, which counts them as the upstream
        # token endpoint does (denied, not_found, invalid_request).
        with token_exchange.refusals(name), operation(services, "token", name, summary=fields):
            body = token_exchange.exchange(parsed, authenticator=services.authenticator, decider=services.decider,
                                           decision_log=services.decision_log, upstream_tokens=services.upstream_tokens,
                                           clock=services.clock, peer_ip=request.remote_addr or "",
                                           forwarded_for=request.headers.get("X-Forwarded-For"))
        response = jsonify(body)
    except token_exchange.TokenExchangeError as refused:
        response = jsonify(error=refused.error, error_description=refused.description)
        response.status_code = refused.status
    except GovernError as exc:
        if exc.status != 429:
            raise  # govern's own failure: 503 temporarily_unavailable or 500 server_error, as for any grant
        response = jsonify(error="slow_down", error_description=exc.detail)  # a rate limit or the daily budget
        response.status_code = 429
        response.headers.update(exc.headers)
    finally:
        g.log_fields = fields  # the request line carries the operation's fields (govern.app)
    # RFC 6749 section 5.1 (and RFC 8693 section 2.2): token answers are never cached
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _record(response, grant_type: str, started: float) -> None:
    """Client id (as claimed), grant, scopes, outcome and rule; never the secret, assertion or token."""
    services = current_app.extensions["govern"]
    body = response.get_json(silent=True) or {}
    fields = token_decision(response.status_code, body, grant_type[:50], request.form.get("scope"))
    refusal = g.get("oauth_refusal")
    if refusal and not fields["allowed"]:
        fields["rules"].append(refusal)  # what failed in a federated assertion (govern.broker.federation)
    services.decision_log.append(
        None, None, action="oauth_token", method="POST", path="/oauth/token",
        integration_user=oauth_server.claimed_client_id(request.headers.get("Authorization"), request.form),
        source_ip=services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For")),
        latency_ms=(time.perf_counter() - started) * 1000, **fields)


@bp.get("/oauth/jwks.json")
@api.validate(resp=Responses(HTTP_200=(JWKSet, "JWK Set")), operation_id="getJwks")
def jwks():
    """govern's public token-signing keys (RFC 7517)"""
    services = current_app.extensions["govern"]
    response = jsonify(services.signing_keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.get("/.well-known/oauth-authorization-server")
@api.validate(resp=Responses(HTTP_200=(ServerMetadata, "metadata")), operation_id="getOAuthMetadata")
def metadata():
    """Authorization server metadata (RFC 8414)

    The issuer is GOVERN_ISSUER; endpoint URLs are absolute, built from
    GOVERN_PUBLIC_URL (never from this request's Host)."""
    settings = current_app.extensions["govern"].settings
    return jsonify({
        "issuer": settings.issuer,
        "token_endpoint": settings.public_endpoint("/oauth/token"),
        "jwks_uri": settings.public_endpoint("/oauth/jwks.json"),
        "grant_types_supported": ["client_credentials", token_exchange.GRANT_TYPE],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": [ALGORITHM],
    })
