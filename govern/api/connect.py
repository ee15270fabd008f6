"""Connecting a principal (authorization code + PKCE): start it, and receive the upstream's callback.

`POST /api/v1/credentials/{id}/principals/{name}/connect` (admin token) answers the authorize URL to open;
`GET /oauth/callback` exchanges the code and shows a small page. The work is in
govern.broker.upstream.connect.ConnectService.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify, request
from markupsafe import escape

from govern.api.auth import require_admin
from govern.errors import GovernError, InvalidParameter
from govern.broker.upstream import build_connect_service

bp = Blueprint("connect", __name__)


def _service():
    services = current_app.extensions["govern"]
    connect = services.connect
    if connect is None:
        connect = services.connect = build_connect_service(services)
    return connect


@bp.post("/api/v1/credentials/<credential>/principals/<principal>/connect")
@require_admin("admin")
def start(credential: str, principal: str):
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):  # e.g. a bare number: a 500 (AttributeError) before, found by schemathesis
        raise InvalidParameter([{"location": "body", "message": "must be a JSON object"}])
    # From GOVERN_PUBLIC_URL: a forged Host must not choose where the upstream sends the code.
    redirect_uri = current_app.extensions["govern"].settings.public_endpoint("/oauth/callback")
    login_hint = body.get("login_hint") if isinstance(body.get("login_hint"), str) else None
    result = _service().start(credential, principal, redirect_uri, login_hint=login_hint)
    current_app.logger.info("principal connect started", extra={"credential": credential, "principal": principal,
                                                                "actor": g.admin_user})
    return jsonify(result)


@bp.get("/oauth/callback")
def callback():
    started = time.perf_counter()
    try:
        done = _service().finish(request.args.get("state"), request.args.get("code"), request.args.get("error"))
    except GovernError as exc:
        _record(started, None, outcome="deny" if exc.status < 500 else "error", error=exc)
        raise
    _record(started, done, outcome="allow")
    page = (f"<!doctype html><title>govern: connected</title><h1>Connected</h1>"
            f"<p>Principal <b>{escape(done.principal)}</b> of credential <b>{escape(done.credential)}</b> is connected. "
            f"You can close this window.</p>")
    return page, 200, {"Content-Type": "text/html; charset=utf-8"}


def _record(started: float, done, *, outcome: str, error: GovernError | None = None) -> None:
    """A connect is a decision too: the principal's refresh token is stored (allow) or not (deny, error).
    The external credential is in `resource_object`; the code and the tokens are never recorded."""
    services = current_app.extensions["govern"]
    services.decision_log.append(
        None, None, action="connect", method="GET", path="/oauth/callback", allowed=outcome != "deny",
        outcome=outcome, principal=done.principal if done else None,
        resource_object=done.credential if done else None,
        integration_user=done.integration_user if done else None,
        rules=["permit:connect"] if error is None else [f"{outcome}:{error.code}"],
        error_code=error.code if error is not None and outcome == "error" else None,
        source_ip=services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For")),
        latency_ms=(time.perf_counter() - started) * 1000)


_PROBLEM = {"description": "RFC 9457 problem details",
            "content": {"application/problem+json": {"schema": {"type": "object"}}}}

# For govern/api/openapi.py (the authz half's document): `DOCUMENT["paths"].update(connect.OPENAPI_PATHS)`.
OPENAPI_PATHS: dict = {
    "/api/v1/credentials/{credential}/principals/{principal}/connect": {"post": {
        "summary": "Start connecting a principal (authorization code with PKCE, RFC 7636 S256)",
        "operationId": "connectPrincipal",
        "security": [{"adminToken": []}],
        "parameters": [{"name": "credential", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "principal", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"login_hint": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "The URL to open in a browser; state and verifier stay in govern",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["authorize_url", "expires_in"],
                        "properties": {"authorize_url": {"type": "string"}, "expires_in": {"type": "integer"}}}}}},
            "401": _PROBLEM, "403": _PROBLEM, "404": _PROBLEM}}},
    "/oauth/callback": {"get": {
        "summary": "The upstream's redirect after consent: exchanges the code and stores the refresh token",
        "operationId": "connectCallback",
        "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                       for n in ("code", "state", "error")],
        "responses": {"200": {"description": "A small HTML page saying the principal is connected",
                              "content": {"text/html": {}}},
                      "400": _PROBLEM, "502": _PROBLEM, "503": _PROBLEM}}},
}
