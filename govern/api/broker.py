"""The broker's HTTP edge: `POST /api/v1/named-credentials/{name}/token`."""
from __future__ import annotations

import json
import time

from flask import Blueprint, current_app, g, request

from govern.broker.token_service import upstream_token
from govern.domain.access_rules import parse_scopes
from govern.errors import ValidationFailed
from govern.ops.observe import operation

bp = Blueprint("broker", __name__, url_prefix="/api/v1")


def token_request() -> tuple[tuple[str, ...], str | None]:
    """`scope` (a space-delimited string or a list) and `rejected_token` from a JSON body or form fields.

    `rejected_token` is the upstream token the caller just saw refused with a 401: govern then fetches a new
    one, but only if that token is still the one it holds (see token_service.upstream_token)."""
    raw, rejected = None, None
    if request.is_json:
        data = request.get_data(cache=False)
        try:
            body = json.loads(data) if data else None
        except ValueError:
            raise ValidationFailed([{"location": "body", "message": "is not valid JSON"}]) from None
        if body is not None and not isinstance(body, dict):
            raise ValidationFailed([{"location": "body", "message": "must be a JSON object"}])
        raw = (body or {}).get("scope")
        rejected = (body or {}).get("rejected_token")
    elif request.mimetype == "application/x-www-form-urlencoded":
        raw = request.form.get("scope")
        rejected = request.form.get("rejected_token")
    if raw is not None and not (isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(s, str) for s in raw))):
        raise ValidationFailed([{"location": "scope", "message": "must be a space-delimited string or a list of strings"}])
    if rejected is not None and not isinstance(rejected, str):
        raise ValidationFailed([{"location": "rejected_token", "message": "must be a string"}])
    return parse_scopes(raw), rejected or None


@bp.post("/named-credentials/<name>/token")
def named_credential_token(name: str):
    started = time.perf_counter()
    services = current_app.extensions["govern"]
    scopes, rejected = token_request()
    fields: dict = {}
    try:
        with operation(services, "token", name, summary=fields):
            body = upstream_token(services, named_credential=name, authorization=request.headers.get("Authorization"),
                                  peer_ip=request.remote_addr or "",
                                  forwarded_for=request.headers.get("X-Forwarded-For"),
                                  scopes=scopes, started=started, rejected_token=rejected)
    finally:
        # One line per request: the request line (govern.app) carries the operation's fields.
        g.log_fields = fields
    return current_app.response_class(json.dumps(body), mimetype="application/json")
