"""The broker's HTTP edge: `POST /api/v1/named-credentials/{name}/token`."""
from __future__ import annotations

import json
import time

from flask import Blueprint, current_app, g, request
from pydantic import BaseModel, ConfigDict, Field

from govern.api.spec import api, openapi_extra, responses, validated_json
from govern.broker.token_service import upstream_token
from govern.domain.access_rules import parse_scopes
from govern.ops.observe import operation

bp = Blueprint("broker", __name__, url_prefix="/api/v1")
_REJECTED = ("An upstream token the upstream refused (401). govern fetches a new one only if this is still the token "
             "it holds, so concurrent reports cause one upstream call (docs/upstream-tokens.md).")


class TokenRequest(BaseModel):
    """`scope`: space-delimited or a list; none means the permission sets' scopes."""

    scope: str | list[str] | None = None
    rejected_token: str | None = Field(None, description=_REJECTED, json_schema_extra={"writeOnly": True})


class TokenRequestForm(BaseModel):
    scope: str | None = Field(None, description="space-delimited")
    rejected_token: str | None = Field(None, description=_REJECTED, json_schema_extra={"writeOnly": True})


class UpstreamToken(BaseModel):
    """An upstream access token; never a refresh token or a secret."""

    model_config = ConfigDict(extra="forbid")
    access_token: str
    token_type: str
    expires_in: int | None = None
    scope: str | None = None


def token_request() -> tuple[tuple[str, ...], str | None]:
    """`scope` and `rejected_token` from the JSON body or the form fields, as TokenRequest read them.

    `rejected_token` is the upstream token the caller just saw refused with a 401: govern then fetches a new
    one, but only if that token is still the one it holds (see token_service.upstream_token)."""
    body = validated_json()
    if body is None:
        return (), None
    return parse_scopes(body.scope), body.rejected_token or None


@bp.post("/named-credentials/<name>/token")
@api.validate(json=TokenRequest, form=TokenRequestForm, security={"governAccessToken": []},
              resp=responses(200, UpstreamToken, 401, 403, 404, 409, 422, 502, 503, description="The upstream token"),
              operation_id="getUpstreamToken")
@openapi_extra(requestBody={"required": False})
def named_credential_token(name: str):
    """An upstream access token for the caller's principal of a named credential

    Authenticated with a govern access token; decided by the permission sets and the guardrail policies; every
    decision is logged. Never returns refresh tokens or secrets. Serves OAuth credentials only: a named credential
    holding a static secret (basic, api_key_header, custom_header) answers 400 `proxy_only_credential`; call it
    through `/api/v1/named-credentials/{name}/proxy/{path}`. The token's scopes are the granted ones (the
    request's, inside the permission sets, the govern token and the user's allowed scopes); an empty intersection
    is 403 `deny:no_grantable_scope`. 409 `principal_needs_reconnect`: the upstream refused the stored refresh
    token (no upstream call is made until the principal is reconnected)."""
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
