"""The broker's HTTP edge: `POST /api/v1/named-credentials/{name}/token`.

A JSON request (what govern.client sends) is served by `TokenRouteEdge`, a thin WSGI edge in front of
Flask, as the proxy is (govern.api.proxy.ProxyEdge): on a cache hit, Flask's request context, routing,
session and hooks cost about a fifth of govern's CPU per token (py-spy under wrk, bench/broker.py
--profile). The edge makes the same checks as the Flask hooks for this route (Content-Length, NUL, JSON
depth; govern.api.edge) and does what they do for every response (correlation id, security headers,
problem+json with a stable code, one request log line with the operation's fields). Any other shape
(a form body, a query string, no Content-Length, a NUL in the path) goes on to the Flask view below,
which answers exactly as before.
"""
from __future__ import annotations

import json
import logging
import re
import time

from flask import Blueprint, current_app, g, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from govern.api.conventions import SECURITY_HEADERS, log_request
from govern.api.problems import problem_parts, unexpected
from govern.api.spec import api, openapi_extra, raise_validation, responses, validated_json
from govern.bounds import MAX_JSON_DEPTH, ascii_int, json_depth_exceeds, json_has_nul
from govern.broker.token_service import upstream_token
from govern.domain.access_rules import parse_scopes
from govern.errors import GovernError, InvalidParameter, JsonTooDeep, ValidationFailed
from govern.logs import CORRELATION_HEADER, accept_correlation_id, bind_correlation_id
from govern.ops.observe import operation

bp = Blueprint("broker", __name__, url_prefix="/api/v1")
log = logging.getLogger("govern.http")
# The name is one non-empty segment, as Flask's default converter matches it.
_ROUTE = re.compile(r"^/api/v1/named-credentials/([^/]+)/token$")
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


def parse_token_body(body) -> tuple[tuple[str, ...], str | None]:
    """`scope` and `rejected_token` from a decoded JSON body, read by TokenRequest with the same errors as the
    Flask view's validation (govern.api.spec): TokenRouteEdge and the view answer alike."""
    try:
        parsed = TokenRequest.model_validate({} if body is None else body)
    except ValidationError as error:
        raise_validation(error, "body")
    return parse_scopes(parsed.scope), parsed.rejected_token or None


def _loads(data: bytes):
    try:
        return json.loads(data) if data else None
    except ValueError:
        raise ValidationFailed([{"location": "body", "message": "is not valid JSON"}]) from None


def issue(services, name: str, environ, scopes: tuple[str, ...], rejected: str | None, started: float,
          fields: dict) -> dict:
    """Authenticate, decide, log and hand out the upstream token, as one observed operation."""
    with operation(services, "token", name, summary=fields):
        return upstream_token(authenticator=services.authenticator, decider=services.decider,
                              decisions=services.decision_log, source=services.upstream_tokens, clock=services.clock,
                              named_credential=name, authorization=environ.get("HTTP_AUTHORIZATION"),
                              peer_ip=environ.get("REMOTE_ADDR") or "",
                              forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
                              scopes=scopes, started=started, rejected_token=rejected)


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
        body = issue(services, name, request.environ, scopes, rejected, started, fields)
    finally:
        # One line per request: the request line (govern.app) carries the operation's fields.
        g.log_fields = fields
    return current_app.response_class(json.dumps(body), mimetype="application/json")


def _is_json(content_type: str | None) -> bool:
    """application/json and every +json type, as werkzeug's `is_json`."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class TokenRouteEdge:
    """WSGI middleware: serves a JSON `POST /api/v1/named-credentials/{name}/token`; passes every other
    request (and every other shape of this one) to `inner`, the Flask app."""

    def __init__(self, inner, services, *, max_body: int):
        self.inner = inner
        self.services = services
        self.max_body = max_body

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            return self.inner(environ, start_response)
        match = _ROUTE.match(environ.get("PATH_INFO", ""))
        if match is None or not self._plain(environ):
            return self.inner(environ, start_response)
        return self._serve(environ, start_response, match.group(1))

    def _plain(self, environ) -> bool:
        """A JSON body of a stated length within the limit, no query string, no NUL in the path: the shape the
        edge serves. Anything else is Flask's to check and answer (400, 413, a form body)."""
        if environ.get("QUERY_STRING") or "\x00" in environ.get("PATH_INFO", ""):
            return False
        if not _is_json(environ.get("CONTENT_TYPE")) or environ.get("HTTP_TRANSFER_ENCODING"):
            return False
        length = ascii_int((environ.get("CONTENT_LENGTH") or "").strip())
        return length is not None and length <= self.max_body

    def _serve(self, environ, start_response, name: str):
        started = time.perf_counter()
        path = environ["PATH_INFO"]
        correlation_id = accept_correlation_id(environ.get("HTTP_X_CORRELATION_ID"))
        bind_correlation_id(correlation_id)
        fields: dict = {}
        try:
            data = get_input_stream(environ).read()
            if json_depth_exceeds(data, MAX_JSON_DEPTH):
                raise JsonTooDeep(f"JSON may nest at most {MAX_JSON_DEPTH} arrays or objects")
            if json_has_nul(data):
                raise InvalidParameter([{"location": "body", "message": "must not contain a NUL character"}])
            scopes, rejected = parse_token_body(_loads(data))
            answer = issue(self.services, name, environ, scopes, rejected, started, fields)
            status, headers, body = 200, [("Content-Type", "application/json")], json.dumps(answer).encode()
        except GovernError as error:
            if error.status >= 500:
                # govern's own error text never quotes a secret (govern.errors); an operator needs it to act.
                log.error("request failed", extra={"code": error.code, "status": error.status, "detail": error.detail})
            status, headers, body = problem_parts(error, path, correlation_id)
        except Exception as exc:  # noqa: BLE001 - logged (redacted by govern.logs), never in the answer
            status, headers, body = problem_parts(unexpected(exc), path, correlation_id)
        headers += [(CORRELATION_HEADER, correlation_id), *SECURITY_HEADERS, ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}", headers)
        log_request("POST", path, status, started, fields)
        return [body]
