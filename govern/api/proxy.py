"""/api/v1/named-credentials/{name}/proxy/{path}: parse the request, call the proxy service, render.

Thin edge: authenticate, read the body up to the named credential's limit, hand over the raw
(still percent-encoded) path so the SSRF rules see what was on the wire.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.routing import PathConverter

from govern.broker.proxy.errors import PayloadTooLarge
from govern.broker.proxy.headers import forwardable_request_headers
from govern.broker.proxy.service import PROXY_PREFIX, ProxyCall

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
    caller = _caller()
    proxy_service = services.extras["proxy"]
    target = proxy_service.target(name)
    body = _read_body(target.max_body_bytes)
    call = ProxyCall(named_credential=name, method=request.method, raw_path=_raw_remainder(name, path),
                     query=request.environ.get("QUERY_STRING", ""),
                     headers=forwardable_request_headers(request.headers.items()), body=body, caller=caller,
                     correlation_id=g.correlation_id, idempotency_key=request.headers.get("Idempotency-Key"))
    result = proxy_service.handle(call)
    response = Response(result.body, status=result.status, direct_passthrough=not isinstance(result.body, bytes))
    response.headers.pop("Content-Type", None)
    for key, value in result.headers.items():
        response.headers[key] = value
    return response


@bp.get(f"{PROXY_PREFIX}/<name>/queued/<int:call_id>")
def queued(name: str, call_id: int):
    from govern.broker.proxy.queue import queued_status

    caller = _caller()
    return jsonify(queued_status(_services(), name, caller.integration_user, call_id))
