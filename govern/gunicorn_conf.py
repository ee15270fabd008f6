"""gunicorn settings for govern's web process: `gunicorn -c python:govern.gunicorn_conf 'govern.wsgi:app()'`.

Environment: GOVERN_WEB_WORKERS (default 2), GOVERN_WEB_THREADS (default 16), GOVERN_WEB_BIND (default
127.0.0.1:8000). Options given on the command line still win over these (gunicorn's own precedence).
"""
from __future__ import annotations

import os


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        # SystemExit, not ValueError: gunicorn prints an exception's traceback, a SystemExit's message only.
        raise SystemExit(f"error: {name} must be a positive integer, got {raw!r}")
    return value


# The proxy and the token endpoint wait on upstream systems for up to their timeout; with threads, a worker
# keeps serving other requests while some of them wait, where a sync worker would be blocked by one.
# 64 threads: a thread is held for the whole upstream wait, so the threads must outnumber what one slow system
# may hold (its bulkhead, GOVERN_PROXY_MAX_CONCURRENT_CALLS, 32 per process by default) with room left for
# token issuance and the other systems. With 16, a system answering in 5 s under 100 concurrent calls held
# every thread and slowed calls to other systems 1,290x; with 64 they stayed within 1.2x (bench/bulkhead.py).
worker_class = "gthread"
threads = _positive_int("GOVERN_WEB_THREADS", 64)
workers = _positive_int("GOVERN_WEB_WORKERS", 2)
bind = os.environ.get("GOVERN_WEB_BIND", "").strip() or "127.0.0.1:8000"

# Longer than the load balancer's idle timeout (60 s on AWS ALB and nginx's upstream default): the balancer
# must be the one to close an idle connection, else it may reuse one govern has just closed and answer 502.
keepalive = 75

# govern writes one structured JSON line per request itself (govern.app and the proxy edge); gunicorn's
# access log would be a second line for each, costing CPU and saying nothing more.
accesslog = None

# gunicorn 27's control socket lives at ~/.gunicorn/gunicorn.ctl: shared by every gunicorn of the same user,
# not writable on a read-only root filesystem (deploy/k8s), and govern has no use for it (workers are
# managed with signals by the orchestrator).
control_socket_disable = True
