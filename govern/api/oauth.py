"""govern's OAuth 2.0 endpoints: `POST /oauth/token` (RFC 6749), `GET /oauth/jwks.json` (RFC 7517) and
the authorization server metadata `GET /.well-known/oauth-authorization-server` (RFC 8414).

Errors on /oauth/token are RFC 6749 section 5.2 JSON (`{"error", "error_description"}`), never
problem+json. Every issuance and refusal is in the decision log (action `oauth_token`) before the answer
is sent; when it cannot be recorded the answer is 503 temporarily_unavailable.
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify, request

from govern.api.edge import basic_credentials_readable
from govern.broker.decision_log import DecisionLogUnavailable
from govern.errors import GovernError

bp = Blueprint("oauth", __name__)
log = logging.getLogger("govern.oauth")


def _source_ip() -> str:
    services = current_app.extensions["govern"]
    return services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For"))


def _server():
    server = current_app.extensions.get("govern.oauth_server")
    if server is None:
        from govern.broker.oauth_server import GovernAuthorizationServer
        from govern.store.seen_assertions import CacheSeenAssertions, DatabaseSeenAssertions

        services = current_app.extensions["govern"]
        # Single-use assertions across processes: in Redis when configured, else in the shared database.
        seen = (CacheSeenAssertions(services.cache, services.clock) if services.cache.kind == "redis"
                else DatabaseSeenAssertions(services.engine, services.clock))
        server = GovernAuthorizationServer(services, _source_ip, rate_limits=services.rate_limits,
                                           seen_assertions=seen)
        current_app.extensions["govern.oauth_server"] = server
    return server


def _slow_down(retry_after: int):
    response = jsonify(error="slow_down",
                       error_description="too many attempts; retry after the number of seconds in Retry-After")
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


@bp.post("/oauth/token")
def token():
    """Issue a token; the issuance or refusal is recorded in the decision log before the answer goes out.

    Requests the rate limits refuse (429 slow_down) are answered before anything is parsed or hashed and are
    not recorded one by one, so that a flood can neither burn CPU nor fill the decision log; they are counted
    by the rate limiter and logged by it."""
    from govern.broker.client_authentication import already_limited, claimed_client_id

    services = current_app.extensions["govern"]
    if not basic_credentials_readable(request.headers.get("Authorization")):
        # authlib would fail on credentials that are not base64 of UTF-8 (RFC 7617 section 2) with a 500
        return (jsonify(error="invalid_client", error_description="the Basic credentials are not base64 of UTF-8"),
                401, {"WWW-Authenticate": 'Basic realm="govern"'})
    try:
        # Per source address, before anything is parsed, loaded or hashed; a guesser this process already
        # refused is answered from memory (govern.ratelimit).
        address = _source_ip()
        known = already_limited(services.rate_limits, claimed_client_id(request.headers), address)
        if known is not None:
            return _slow_down(known.retry_after)
        verdict = services.rate_limits.hit("token_requests", address)
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
            response = _server().create_token_response()
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


def _record(response, grant_type: str, started: float) -> None:
    """Client id (as claimed), grant, scopes, outcome and rule; never the secret, assertion or token."""
    from govern.broker.oauth_server import claimed_client_id, token_decision

    services = current_app.extensions["govern"]
    body = response.get_json(silent=True) or {}
    fields = token_decision(response.status_code, body, grant_type[:50], request.form.get("scope"))
    services.decision_log.append(
        None, None, action="oauth_token", method="POST", path="/oauth/token",
        integration_user=claimed_client_id(request.headers.get("Authorization"), request.form),
        source_ip=services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For")),
        latency_ms=(time.perf_counter() - started) * 1000, **fields)


@bp.get("/oauth/jwks.json")
def jwks():
    services = current_app.extensions["govern"]
    response = jsonify(services.extras["broker.signing_keys"].jwks())
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    """RFC 8414 section 2. The issuer is GOVERN_ISSUER; endpoint URLs are absolute, built from
    GOVERN_PUBLIC_URL (never from this request's Host)."""
    from govern.broker.signing_keys import ALGORITHM

    settings = current_app.extensions["govern"].settings
    return jsonify({
        "issuer": settings.issuer,
        "token_endpoint": settings.public_endpoint("/oauth/token"),
        "jwks_uri": settings.public_endpoint("/oauth/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": [ALGORITHM],
    })
