"""What every HTTP answer shares, whichever edge serves it: the Flask app (govern.app) and the two WSGI edges
in front of it (govern.api.proxy.ProxyEdge, govern.api.oauth.TokenEdge)."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("govern.http")
# Set on every response unless the handler set them (JSON APIs and the console alike).
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))
UNLOGGED_PATHS = ("/healthz", "/readyz", "/metrics")


def log_request(method: str, path: str, status: int, started: float, fields: Mapping[str, Any] | None) -> None:
    """The one line per request: method, path, status, duration, and the operation's fields if any.

    Handed to the logger's handlers as `log.info` would, without looking up the calling frame (findCaller):
    no line of govern's shows where it was written from, and this one is written for every request."""
    if path in UNLOGGED_PATHS or not log.isEnabledFor(logging.INFO):
        return
    extra = {"method": method, "path": path, "status": status,
             "duration_ms": round((time.perf_counter() - started) * 1000, 2), **(fields or {})}
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "request", (), None, extra=extra))
