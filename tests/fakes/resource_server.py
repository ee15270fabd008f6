"""A fault-injecting upstream RESOURCE server (seed section 16) on a free port, for proxy tests and the bench.

It counts requests and records what arrived (method, raw path, query, headers, body), so tests can
assert the injected credential and correlation id, and that the caller's Authorization never
arrives. Faults are queued and consumed one per request: `fail_next`, `rate_limit_next`,
`unauthorized_next`, `slow_next`, `redirect_next`; `stop()` makes the port refuse connections and
`start()` brings it back on the same port.
"""
from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Fault:
    kind: str
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    location: str | None = None


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real upstreams

    def log_request(self, *args, **kwargs):  # quiet: tests read the recorded requests instead
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ResourceServer:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.received: list[Received] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = None
        self._thread = None

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ResourceServer:
        self._release.clear()
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True,
                                   request_handler=_KeepAliveHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # wake slow handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- faults ------------------------------------------------------------------------------
    def _push(self, fault: _Fault, n: int) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(n))

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        self._push(_Fault("status", status=status), n)

    def rate_limit_next(self, n: int = 1, retry_after: str = "1") -> None:
        self._push(_Fault("status", status=429, retry_after=retry_after), n)

    def unauthorized_next(self, n: int = 1) -> None:
        self._push(_Fault("status", status=401), n)

    def slow_next(self, n: int = 1, delay: float = 5.0) -> None:
        self._push(_Fault("slow", delay=delay), n)

    def release_slow(self) -> None:
        """Let every slow answer go now (and later ones too, until the next `start`)."""
        self._release.set()

    def redirect_next(self, location: str, n: int = 1, status: int = 302) -> None:
        self._push(_Fault("redirect", status=status, location=location), n)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def last(self) -> Received:
        with self._lock:
            return self.received[-1]

    # --- the WSGI app -------------------------------------------------------------------------
    def _app(self, environ, start_response):
        request = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path
        body = request.get_data()
        with self._lock:
            self.received.append(Received(request.method, raw.split("?", 1)[0], environ.get("QUERY_STRING", ""),
                                          dict(request.headers.items()), body))
            n = len(self.received)
            fault = self._faults.popleft() if self._faults else None
        response = self._answer(request, body, n, fault)
        return response(environ, start_response)

    def _answer(self, request, body, n, fault) -> Response:
        if fault is not None:
            if fault.kind == "slow":
                self._release.wait(fault.delay)
            elif fault.kind == "redirect":
                return Response("", status=fault.status, headers={"Location": fault.location})
            else:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return Response(json.dumps({"error": f"injected {fault.status}"}), status=fault.status,
                                headers=headers, content_type="application/json")
        doc = {"ok": True, "n": n, "method": request.method, "path": request.path, "query": request.query_string.decode(),
               "body": body.decode("utf-8", "replace")}
        status = 201 if request.method == "POST" else 200
        headers = {"Set-Cookie": "upstream_session=abc; Path=/", "X-Upstream-Internal": "yes", "ETag": f'"{n}"'}
        if status == 201:
            headers["Location"] = f"{request.path.rstrip('/')}/{n}"
        return Response(json.dumps(doc), status=status, headers=headers, content_type="application/json")
