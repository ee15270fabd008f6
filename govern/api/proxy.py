"""/api/v1/named-credentials/{name}/proxy/{path}: parse the request, call the proxy service, render.

The callout proxy is govern's hot path, so it is served by `ProxyEdge`, a thin WSGI edge in front of
Flask, rather than by a Flask view: a Flask request context, routing, session and hooks cost about a
quarter of govern's CPU per proxied call (measured with bench/proxy.py). The edge does what the Flask
hooks do for every other route, with the same helpers: the correlation id (accepted or made, echoed),
the security headers, errors as problem+json with a stable code, and one request log line carrying the
operation's fields. Everything else, including `GET …/queued/{id}`, goes on to Flask.

The path after /proxy/ is handed over raw (still percent-encoded, from gunicorn's RAW_URI) so the SSRF
rules see what was on the wire.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from typing import Literal

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from govern.api.conventions import SECURITY_HEADERS, log_request
from govern.api.edge import content_length
from govern.api.problems import unexpected
from govern.api.spec import _REASONS, api, responses
from govern.bounds import MAX_JSON_DEPTH, json_depth_exceeds
from govern.broker.authenticator import CallerDenied
from govern.broker.authorization import UNKNOWN_NAMED_CREDENTIAL, record_caller_denied
from govern.broker.proxy.call import PROXY_PREFIX, ProxyCall
from govern.broker.proxy.errors import PayloadTooLarge
from govern.broker.proxy.headers import forwardable_environ_headers
from govern.errors import GovernError, JsonTooDeep, MethodNotAllowed, NotFound
from govern.logs import CORRELATION_HEADER, accept_correlation_id, bind_correlation_id
from govern.ops.observe import note_caller, operation

log = logging.getLogger("govern.http")
bp = Blueprint("proxy", __name__)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CHUNK = 64 * 1024
PROBLEM_JSON = "application/problem+json"
# The name is one non-empty segment (as Flask's default converter); the rest may be anything, even empty.
_ROUTE = re.compile(r"^" + re.escape(PROXY_PREFIX) + r"/([^/]+)/proxy/(.*)$", re.S)


class ProxyEdge:
    """WSGI middleware: serves the proxy route, passes every other request to `inner` (the Flask app)."""

    def __init__(self, inner, services, *, max_body: int | None = None):
        self.inner = inner
        self.services = services
        self.max_body = max_body

    def __call__(self, environ, start_response):
        match = _ROUTE.match(environ.get("PATH_INFO", ""))
        if match is None:
            return self.inner(environ, start_response)
        return self._serve(environ, start_response, match.group(1), match.group(2))

    def _serve(self, environ, start_response, name: str, decoded_rest: str):
        started = time.perf_counter()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        correlation_id = accept_correlation_id(environ.get("HTTP_X_CORRELATION_ID"))
        bind_correlation_id(correlation_id)
        fields: dict = {}
        try:
            if method not in METHODS:
                raise MethodNotAllowed(f"the proxy does not forward {method[:20]} requests", allow=METHODS)
            with operation(self.services, "proxy", name, summary=fields) as op:
                call = self._call(environ, name, decoded_rest, correlation_id, started)
                result = self.services.proxy.handle(call)
                op.status = result.status
            status, headers, body = result.status, list(result.headers.items()), result.body
        except GovernError as error:
            status, headers, body = _problem(error, path, correlation_id)
        except Exception as exc:  # noqa: BLE001 - the type only: third-party text may quote request data
            status, headers, body = _problem(unexpected(exc, traceback=False), path, correlation_id)
        present = {key.lower() for key, _ in headers}
        headers.append((CORRELATION_HEADER, correlation_id))
        headers.extend((key, value) for key, value in SECURITY_HEADERS if key.lower() not in present)
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
            body = [body]
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}", headers)
        log_request(method, path, status, started, fields)
        return body  # a stream's generator closes the upstream response when the server closes it

    def _call(self, environ, name: str, decoded_rest: str, correlation_id: str, started: float) -> ProxyCall:
        try:
            caller = self.services.authenticator.authenticate(environ.get("HTTP_AUTHORIZATION"),
                                                              environ.get("REMOTE_ADDR") or "",
                                                              environ.get("HTTP_X_FORWARDED_FOR"))
        except CallerDenied as denied:  # suspended, or outside its IP ranges: a decision, on record
            record_caller_denied(self.services.decision_log, denied, action="proxy", named_credential=name[:200],
                                 method=environ["REQUEST_METHOD"][:10],
                                 path=_raw_remainder(environ, decoded_rest)[:2000], started=started)
            raise
        note_caller(caller.integration_user)
        try:
            target = self.services.proxy.target(name)
        except NotFound:  # an identified caller probing for named credentials: a refusal, on record
            self.services.decision_log.append(
                None, None, integration_user=caller.integration_user, source_ip=caller.source_ip, action="proxy",
                named_credential=name[:200], method=environ["REQUEST_METHOD"][:10],
                path=_raw_remainder(environ, decoded_rest)[:2000], scopes_requested=list(caller.scopes),
                outcome="deny", rules=[UNKNOWN_NAMED_CREDENTIAL], latency_ms=(time.perf_counter() - started) * 1000)
            raise
        limit = target.max_body_bytes if self.max_body is None else min(target.max_body_bytes, self.max_body)
        body = _read_body(environ, limit)
        if _is_json(environ.get("CONTENT_TYPE")) and json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise JsonTooDeep(f"JSON may nest at most {MAX_JSON_DEPTH} arrays or objects")
        return ProxyCall(named_credential=name, method=environ["REQUEST_METHOD"],
                         raw_path=_raw_remainder(environ, decoded_rest), query=environ.get("QUERY_STRING", ""),
                         headers=forwardable_environ_headers(environ), body=body,
                         caller=caller, correlation_id=correlation_id,
                         idempotency_key=environ.get("HTTP_IDEMPOTENCY_KEY"))


def _problem(error: GovernError, path: str, correlation_id: str):
    if error.status >= 500:
        log.error("request failed", extra={"code": error.code, "status": error.status})
    body = json.dumps(error.to_problem(instance=path, correlation_id=correlation_id), default=str).encode()
    return error.status, [("Content-Type", PROBLEM_JSON), *error.headers.items()], body


def _is_json(content_type: str | None) -> bool:
    """application/json and every +json type, as werkzeug's `is_json`."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _raw_remainder(environ, decoded_rest: str) -> str:
    """The part after /proxy/ as received (RAW_URI from gunicorn, REQUEST_URI from werkzeug), else the
    decoded path."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        parts = raw.split("?", 1)[0].split("/", 6)  # '', api, v1, named-credentials, name, proxy, rest
        if len(parts) >= 6 and parts[5] == "proxy":
            return parts[6] if len(parts) == 7 else ""
    return decoded_rest


def _read_body(environ, limit: int) -> bytes:
    """The request body, up to `limit` bytes (413 beyond); a body announced by neither Content-Length nor
    chunked transfer encoding is empty (as werkzeug reads it)."""
    length = content_length(environ)  # 400 unless a number of bytes
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not length and not chunked:
        return b""
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    stream = get_input_stream(environ)
    chunks, total = [], 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _services():
    return current_app.extensions["govern"]


class QueuedCall(BaseModel):
    """A proxied call queued for later delivery (the system was in maintenance or busy)."""

    id: int
    status: Literal["queued", "delivering", "delivered", "dead"]
    attempts: int | None = None
    response_status: int | None = None
    last_status: int | None = None
    next_attempt_at: dt.datetime | None = None


@bp.get(f"{PROXY_PREFIX}/<name>/queued/<int:call_id>")
@api.validate(resp=responses(200, QueuedCall, 401, 403, 404, description="Queued, delivered or dead"),
              security={"governAccessToken": []}, operation_id="getQueuedCall")
def queued(name: str, call_id: int):
    """The status of a queued proxied call (the caller's own calls only)"""
    caller = _services().authenticator.authenticate(request.headers.get("Authorization"), request.remote_addr or "",
                                                    request.headers.get("X-Forwarded-For"))
    return jsonify(_services().proxy.queued.status(name, caller.integration_user, call_id))


PASS_THROUGH_STATUSES = (400, 401, 403, 404, 409, 413, 429, 502, 503, 504)


def pass_through_operations(problem_ref: str) -> dict:
    """The proxy route in the OpenAPI document. ProxyEdge serves it in front of Flask, so spectree does not see
    it; its body and answers are the upstream's (any media type), which no pydantic model describes."""
    problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": problem_ref}}}}
    call = {"summary": "Call the named credential's system with the credential injected (the callout proxy)",
            "description": "Authenticated with a govern access token. The path is resolved under the named "
                           "credential's base URL; paths that escape it answer 400 path_not_allowed. Responses are "
                           "the upstream's, streamed; govern's own failures are problem+json. With an "
                           "Idempotency-Key, a retried call is answered from the first attempt.",
            "security": [{"governAccessToken": []}],
            "parameters": [{"name": "name", "in": "path", "required": True, "description": "the named credential",
                            "schema": {"type": "string"}},
                           {"name": "path", "in": "path", "required": True,
                            "description": "the path under the named credential's base URL",
                            "schema": {"type": "string"}},
                           {"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string"}}],
            "responses": {"default": {"description": "The upstream's response, passed through"},
                          "202": {"description": QueuedCall.__doc__, "content": {"application/json": {
                              "schema": {"$ref": "#/components/schemas/QueuedCall"}}}},
                          **{str(status): {"description": f"{_REASONS[status]} (RFC 9457 problem details)",
                                           **problem} for status in PASS_THROUGH_STATUSES}}}
    operations = {}
    for method in ("get", "post", "put", "patch", "delete"):
        operations[method] = {**call, "operationId": f"proxy{method.title()}"}
        if method in ("post", "put", "patch"):
            operations[method]["requestBody"] = {"required": False, "content": {"*/*": {"schema": {}}}}
    return {f"{PROXY_PREFIX}/{{name}}/proxy/{{path}}": operations}
