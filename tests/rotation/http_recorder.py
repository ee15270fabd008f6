"""A tiny local HTTP server for webhook and management-endpoint tests (threads, port 0)."""
from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    """Records every request; `routes` maps a path to a function(request dict) -> (status, body dict)."""

    def __init__(self, routes=None):
        self.requests: list[dict] = []
        self.routes = routes or {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = {"path": self.path, "headers": dict(self.headers), "body": body}
                recorder.requests.append(req)
                status, payload = recorder.routes.get(self.path, lambda r: (200, {}))(req)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def basic_auth(req) -> tuple[str, str] | None:
    value = req["headers"].get("Authorization", "")
    if not value.startswith("Basic "):
        return None
    user, _, pw = base64.b64decode(value[6:]).decode().partition(":")
    return urllib.parse.unquote(user), urllib.parse.unquote(pw)
