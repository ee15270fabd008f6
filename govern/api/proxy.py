"""/api/v1/named-credentials/{name}/proxy/{path}: parse the request, call the proxy service, render.

Thin edge: authenticate, read the body up to the named credential's limit, hand over the raw
(still percent-encoded) path so the SSRF rules see what was on the wire.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.routing import PathConverter

from govern.broker.proxy.errors import PayloadTooLarge
from govern.broker.proxy.headers import forwardable_environ_headers
from govern.broker.proxy.service import PROXY_PREFIX, ProxyCall
from govern.ops.observe import note_caller, operation

bp = Blueprint("proxy", __name__)


class AnyPathConverter(PathConverter):
    """Anything, even empty, a leading "/" or a newline: the SSRF rules must see it and answer
    400 `path_not_allowed`, rather than the router answering 404."""

    regex = "(?s:.*)"
    part_isolating = False


bp.record_once(lambda state: state.app.url_map.converters.setdefault("anypath", AnyPathConverter))
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CHUNK = 64 * 1024


def _services():
    return current_app.extensions["govern"]


def _caller():
    services = _services()
    return services.authenticator.authenticate(request.headers.get("Authorization"), request.remote_addr or "",
                                               request.headers.get("X-Forwarded-For"))


def _raw_remainder(name: str, path: str) -> str:
    """The part after /proxy/ as received (RAW_URI from gunicorn and werkzeug), else the decoded path."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        raw_path = raw.split("?", 1)[0]
        parts = raw_path.split("/", 6)  # '', api, v1, named-credentials, name, proxy, rest
        if len(parts) >= 6 and parts[5] == "proxy":
            return parts[6] if len(parts) == 7 else ""
    return path


def _read_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    if not length and "chunked" not in request.environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return b""  # no body announced (most GETs): nothing to read
    chunks, total = [], 0
    stream = request.stream
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@bp.route(f"{PROXY_PREFIX}/<name>/proxy/<anypath:path>", methods=METHODS, merge_slashes=False,
          provide_automatic_options=False)
def proxy(name: str, path: str):
    services = _services()
    with operation(services, "proxy", name) as op:
        result = _proxy(services, name, path, op)
    response = Response(result.body, status=result.status, direct_passthrough=not isinstance(result.body, bytes))
    response.headers.pop("Content-Type", None)
    for key, value in result.headers.items():
        response.headers[key] = value
    return response


def _proxy(services, name: str, path: str, op):
    caller = _caller()
    note_caller(caller.integration_user)
    proxy_service = services.extras["proxy"]
    target = proxy_service.target(name)
    body = _read_body(target.max_body_bytes)
    call = ProxyCall(named_credential=name, method=request.method, raw_path=_raw_remainder(name, path),
                     query=request.environ.get("QUERY_STRING", ""),
                     headers=forwardable_environ_headers(request.environ), body=body, caller=caller,
                     correlation_id=g.correlation_id, idempotency_key=request.headers.get("Idempotency-Key"))
    result = proxy_service.handle(call)
    op.status = result.status
    return result


@bp.get(f"{PROXY_PREFIX}/<name>/queued/<int:call_id>")
def queued(name: str, call_id: int):
    from govern.broker.proxy.queue import queued_status

    caller = _caller()
    return jsonify(queued_status(_services(), name, caller.integration_user, call_id))


def _openapi() -> dict:
    from govern.api.spec import json_response, path_param, problems

    call = {"summary": "Call the named credential's system with the credential injected (the callout proxy)",
            "description": "Authenticated with a govern access token. The path is resolved under the named "
                           "credential's base URL; paths that escape it answer 400 path_not_allowed. Responses are "
                           "the upstream's, streamed; govern's own failures are problem+json. With an "
                           "Idempotency-Key, a retried call is answered from the first attempt.",
            "security": [{"governAccessToken": []}],
            "parameters": [path_param("name", "the named credential"),
                           path_param("path", "the path under the named credential's base URL"),
                           {"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string"}}],
            "responses": {"default": {"description": "The upstream's response, passed through"},
                          "202": json_response("Queued for later delivery (the system is in maintenance or busy)",
                                               {"$ref": "#/components/schemas/QueuedCall"}),
                          **problems(400, 401, 403, 404, 409, 413, 429, 502, 503, 504)}}
    body = {"required": False, "content": {"*/*": {"schema": {}}}}
    ops = {}
    for method in ("get", "post", "put", "patch", "delete"):
        op = {**call, "operationId": f"proxy{method.title()}"}
        if method in ("post", "put", "patch"):
            op["requestBody"] = body
        ops[method] = op
    return {
        "/api/v1/named-credentials/{name}/proxy/{path}": ops,
        "/api/v1/named-credentials/{name}/queued/{call_id}": {"get": {
            "summary": "The status of a queued proxied call (the caller's own calls only)",
            "operationId": "getQueuedCall", "security": [{"governAccessToken": []}],
            "parameters": [path_param("name"), path_param("call_id", schema={"type": "integer"})],
            "responses": {"200": json_response("Queued, delivered or dead",
                                               {"$ref": "#/components/schemas/QueuedCall"}),
                          **problems(401, 403, 404)}}},
    }


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
