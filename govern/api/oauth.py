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

from govern.broker.decision_log import DecisionLogUnavailable
from govern.errors import GovernError

bp = Blueprint("oauth", __name__)
log = logging.getLogger("govern.oauth")


def _server():
    server = current_app.extensions.get("govern.oauth_server")
    if server is None:
        from govern.broker.oauth_server import GovernAuthorizationServer

        services = current_app.extensions["govern"]
        server = GovernAuthorizationServer(
            services, lambda: services.authenticator.source_ip(request.remote_addr or "",
                                                               request.headers.get("X-Forwarded-For")))
        current_app.extensions["govern.oauth_server"] = server
    return server


@bp.post("/oauth/token")
def token():
    """Issue a token; the issuance or refusal is recorded in the decision log before the answer goes out."""
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
    try:
        _record(response, grant_type or "", started)
    except GovernError as exc:
        log.error("token request not recorded", extra={"code": exc.code})
        if response.status_code < 500:  # no token and no refusal goes out unrecorded; a failure stays as it is
            response = jsonify(error="temporarily_unavailable", error_description=DecisionLogUnavailable.title)
            response.status_code = 503
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
    """RFC 8414 section 2. The issuer is GOVERN_ISSUER; endpoint URLs are absolute, from this request's host."""
    from govern.broker.signing_keys import ALGORITHM

    services = current_app.extensions["govern"]
    root = request.host_url.rstrip("/")
    return jsonify({
        "issuer": services.settings.issuer,
        "token_endpoint": f"{root}/oauth/token",
        "jwks_uri": f"{root}/oauth/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": [ALGORITHM],
    })
