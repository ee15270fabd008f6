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
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from govern.api.conventions import SECURITY_HEADERS, log_request
from govern.api.problems import problem_parts

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


def parse_token_body(body) -> tuple[tuple[str, ...], str | None]:
    """`scope` (a space-delimited string or a list) and `rejected_token` from a decoded JSON body.

    `rejected_token` is the upstream token the caller just saw refused with a 401: govern then fetches a new
    one, but only if that token is still the one it holds (see token_service.upstream_token)."""
    if body is not None and not isinstance(body, dict):
        raise ValidationFailed([{"location": "body", "message": "must be a JSON object"}])
    return _checked((body or {}).get("scope"), (body or {}).get("rejected_token"))


def _loads(data: bytes):
    try:
        return json.loads(data) if data else None
    except ValueError:
        raise ValidationFailed([{"location": "body", "message": "is not valid JSON"}]) from None


def _checked(raw, rejected) -> tuple[tuple[str, ...], str | None]:
    if raw is not None and not (isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(s, str) for s in raw))):
        raise ValidationFailed([{"location": "scope", "message": "must be a space-delimited string or a list of strings"}])
    if rejected is not None and not isinstance(rejected, str):
        raise ValidationFailed([{"location": "rejected_token", "message": "must be a string"}])
    return parse_scopes(raw), rejected or None


def token_request() -> tuple[tuple[str, ...], str | None]:
    """The request's `scope` and `rejected_token`, from a JSON body or form fields (the Flask view's)."""
    if request.is_json:
        return parse_token_body(_loads(request.get_data(cache=False)))
    if request.mimetype == "application/x-www-form-urlencoded":
        return _checked(request.form.get("scope"), request.form.get("rejected_token"))
    return _checked(None, None)


def issue(services, name: str, environ, scopes: tuple[str, ...], rejected: str | None, started: float,
          fields: dict) -> dict:
    """Authenticate, decide, log and hand out the upstream token, as one observed operation."""
    with operation(services, "token", name, summary=fields):
        return upstream_token(services, named_credential=name, authorization=environ.get("HTTP_AUTHORIZATION"),
                              peer_ip=environ.get("REMOTE_ADDR") or "",
                              forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
                              scopes=scopes, started=started, rejected_token=rejected)


@bp.post("/named-credentials/<name>/token")
def named_credential_token(name: str):
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
        except Exception as exc:  # noqa: BLE001 - a bug: logged (redacted by govern.logs), never in the answer
            log.error("unhandled error", exc_info=exc, extra={"_with_traceback": True})
            status, headers, body = problem_parts(
                GovernError("an unexpected error occurred; quote the correlation id when reporting it"),
                path, correlation_id)
        headers += [(CORRELATION_HEADER, correlation_id), *SECURITY_HEADERS, ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}", headers)
        log_request("POST", path, status, started, fields)
        return [body]
