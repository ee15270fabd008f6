"""Connecting a principal (authorization code + PKCE): start it, and receive the upstream's callback; and
disconnecting it.

`POST /api/v1/credentials/{id}/principals/{name}/connect` (admin token) answers the authorize URL to open;
`GET /oauth/callback` exchanges the code and shows a small page, or, for a flow started from the console,
sends the admin back to the principal's console page (govern.admin.connect). The work is in
govern.broker.upstream.connect.ConnectService. `DELETE /api/v1/credentials/{id}/principals/{name}/connection`
disconnects the principal and queues the revocation of its tokens (govern.broker.upstream.revocation_queue).
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify, request
from markupsafe import escape
from pydantic import BaseModel, Field

from govern.admin import connect as console_connect
from govern.api.auth import require_admin
from govern.api.landscape import Flag
from govern.broker.upstream import build_connect_service, build_revocation_queue
from govern.broker.upstream.connect import Connected, Pending
from govern.broker.upstream.revocation_queue import disconnect_principal
from govern.api.spec import api, openapi_extra, responses, validated_json, validated_query
from govern.errors import GovernError

bp = Blueprint("connect", __name__)


class ConnectRequest(BaseModel):
    login_hint: str | None = Field(None, description="passed to the upstream's authorize page")


class AuthorizeUrl(BaseModel):
    """The URL to open in a browser; state and verifier stay in govern."""

    authorize_url: str
    expires_in: int


class Callback(BaseModel):
    code: str | None = None
    state: str | None = None
    error: str | None = None


class DisconnectQuery(BaseModel):
    dry_run: Flag = Field(False, description="report what would be done; change nothing")


class DisconnectItem(BaseModel):
    action: str = Field(description="revoke (queued for the worker) or disable")
    what: str = Field(description="refresh_token, access_token or principal")
    credential: str | None = None
    principal: str | None = None
    outcome: str = Field(description="done, planned (dry run) or skipped")
    detail: str = ""


class Disconnected(BaseModel):
    """What the disconnect did; the revocations themselves are carried out by `govern worker`."""

    credential: str
    principal: str
    committed: bool
    items: list[DisconnectItem]


def _service():
    services = current_app.extensions["govern"]
    connect = services.connect
    if connect is None:
        connect = services.connect = build_connect_service(services)
    return connect


@bp.post("/api/v1/credentials/<credential>/principals/<principal>/connect")
@require_admin("admin")
@api.validate(json=ConnectRequest, resp=responses(200, AuthorizeUrl, 404, 422), operation_id="connectPrincipal")
@openapi_extra(requestBody={"required": False})
def start(credential: str, principal: str):
    """Start connecting a principal (authorization code with PKCE, RFC 7636 S256)"""
    body = validated_json() or ConnectRequest(login_hint=None)
    # From GOVERN_PUBLIC_URL: a forged Host must not choose where the upstream sends the code.
    redirect_uri = current_app.extensions["govern"].settings.public_endpoint("/oauth/callback")
    login_hint = body.login_hint
    result = _service().start(credential, principal, redirect_uri, login_hint=login_hint, actor=g.admin_user)
    current_app.logger.info("principal connect started", extra={"credential": credential, "principal": principal,
                                                                "actor": g.admin_user})
    return jsonify(result)


@bp.delete("/api/v1/credentials/<credential>/principals/<principal>/connection")
@require_admin("admin")
@api.validate(query=DisconnectQuery, resp=responses(200, Disconnected, 400, 404), operation_id="disconnectPrincipal")
def disconnect(credential: str, principal: str):
    """Disconnect a principal and queue the revocation of its tokens at the provider (RFC 7009)"""
    services = current_app.extensions["govern"]
    commit = not validated_query().dry_run
    report = disconnect_principal(build_revocation_queue(services), services.clock, credential, principal,
                                  commit=commit, actor=g.admin_user)
    if commit:
        current_app.logger.info("principal disconnected", extra={"credential": credential, "principal": principal,
                                                                 "actor": g.admin_user})
    return jsonify(report.as_dict())


@bp.get("/oauth/callback")
@api.validate(query=Callback, resp=responses(200, None, 400, 502, 503,
                                             description="A small HTML page saying the principal is connected"),
              operation_id="connectCallback")
@openapi_extra(responses={"200": {"content": {"text/html": {"schema": {"type": "string"}}}}})
def callback():
    """The upstream's redirect after consent: exchanges the code and stores the refresh token"""
    started = time.perf_counter()
    query = validated_query()
    service = _service()
    try:
        pending = service.claim(query.state)
    except GovernError as exc:
        _record(started, None, outcome="deny" if exc.status < 500 else "error", error=exc)
        back = console_connect.unknown_state(exc)
        if back is not None:
            return back
        raise
    try:
        done = service.complete(pending, query.code, query.error)
    except GovernError as exc:
        _record(started, None, outcome="deny" if exc.status < 500 else "error", error=exc, pending=pending)
        if pending.origin == "console":
            return console_connect.failed(pending, exc)
        raise
    _record(started, done, outcome="allow")
    services = current_app.extensions["govern"]
    console_connect.record_connected(services, done)
    if done.origin == "console":
        return console_connect.connected(done)
    page = (f"<!doctype html><title>govern: connected</title><h1>Connected</h1>"
            f"<p>Principal <b>{escape(done.principal)}</b> of credential <b>{escape(done.credential)}</b> is connected. "
            f"You can close this window.</p>")
    return page, 200, {"Content-Type": "text/html; charset=utf-8"}


def _record(started: float, done: Connected | None, *, outcome: str, error: GovernError | None = None,
            pending: Pending | None = None) -> None:
    """A connect is a decision too: the principal's refresh token is stored (allow) or not (deny, error).
    The external credential is in `resource_object`; `by:<admin>` among the rules names the admin who started
    the flow. The code and the tokens are never recorded."""
    services = current_app.extensions["govern"]
    flow = done or pending
    actor = flow.actor if flow is not None else None
    rules = ["permit:connect"] if error is None else [f"{outcome}:{error.code}"]
    if actor:
        rules.append(f"by:{actor}")
    services.decision_log.append(
        None, None, action="connect", method="GET", path="/oauth/callback", allowed=outcome != "deny",
        outcome=outcome, principal=flow.principal if flow else None,
        resource_object=flow.credential if flow else None,
        integration_user=done.integration_user if done else None,
        rules=rules,
        error_code=error.code if error is not None and outcome == "error" else None,
        source_ip=services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For")),
        latency_ms=(time.perf_counter() - started) * 1000)
