"""Throughput of the broker's authorization hot path against a bare endpoint, under gunicorn.

    python bench/authz_hot_path.py [--seconds 5] [--workers 2] [--connections 32]

Starts gunicorn (sync workers) on a free port over a temporary SQLite instance with one integration
user, issues one govern access token, then drives, for the same duration and concurrency each:
- bare: GET /healthz
- hot:  POST /api/v1/named-credentials/erp-api/token (authenticate the JWT, re-check user and IP,
        decide with permission sets + Cedar guardrails, append to the decision log, and a cache-hit
        upstream token from a constant source)
The last line is `ratio=… hot_rps=… bare_rps=… hot_p50_ms=… hot_p99_ms=…`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home: Path) -> tuple[dict, str]:
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from govern.store.db import upgrade
    from tests.factories import make_landscape
    from tests.fakes.secret_store import MemorySecretStore

    env = {"GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": f"sqlite:///{home / 'govern.db'}",
           "GOVERN_LOG_LEVEL": "WARNING", "GOVERN_POLICIES_DIR": str(ROOT / "policies")}
    settings = load_settings(env)
    services = build_services(settings)
    upgrade(services.engine)
    services.secret_store = MemorySecretStore()
    make_landscape(services.sessions)
    client = create_app(services=services).test_client()
    import base64

    basic = base64.b64encode(b"order-sync:s3cret-client-secret-value").decode()
    resp = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {basic}"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    token = resp.get_json()["access_token"]
    services.close()
    return env, token


def _client(port, method, path, headers, body, deadline, out):
    lat = []
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            out.put(("error", resp.status))
            return
        lat.append((time.perf_counter() - started) * 1000)
    out.put(("ok", lat))


def _driver(port, method, path, headers, body, seconds, threads, out):
    deadline = time.perf_counter() + seconds
    ts = [threading.Thread(target=_client, args=(port, method, path, headers, body, deadline, out))
          for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def drive(port, method, path, headers, body, seconds, connections) -> tuple[float, list[float]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = 2
    ps = [ctx.Process(target=_driver, args=(port, method, path, headers, body, seconds, connections // procs, out))
          for _ in range(procs)]
    started = time.perf_counter()
    for p in ps:
        p.start()
    lat: list[float] = []
    for _ in range(connections // procs * procs):
        kind, value = out.get(timeout=seconds + 120)
        if kind == "error":
            raise SystemExit(f"{path}: HTTP {value}")
        lat.extend(value)
    for p in ps:
        p.join()
    elapsed = time.perf_counter() - started
    return len(lat) / seconds, sorted(lat)


def pct(samples, q):
    return samples[min(len(samples) - 1, int(q * (len(samples) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="govern-bench-authz-"))
    env, token = prepare(home)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
                             f"127.0.0.1:{port}", "--log-level", "warning", "bench._authz_wsgi:app()"],
                            cwd=str(ROOT), env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)  # polling for the server to come up
        hot_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = json.dumps({"scope": "orders.read"})
        # Warm both paths in every worker.
        drive(port, "GET", "/healthz", {}, None, 1, 4)
        drive(port, "POST", "/api/v1/named-credentials/erp-api/token", hot_headers, body, 1, 4)
        bare_rps, bare_lat = drive(port, "GET", "/healthz", {}, None, args.seconds, args.connections)
        hot_rps, hot_lat = drive(port, "POST", "/api/v1/named-credentials/erp-api/token", hot_headers, body,
                                 args.seconds, args.connections)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"bare  GET /healthz: {bare_rps:8.1f} req/s  p50 {pct(bare_lat, .5):6.2f} ms  p99 {pct(bare_lat, .99):6.2f} ms")
    print(f"hot   POST token:   {hot_rps:8.1f} req/s  p50 {pct(hot_lat, .5):6.2f} ms  p99 {pct(hot_lat, .99):6.2f} ms")
    print(f"ratio={hot_rps / bare_rps:.2f} hot_rps={hot_rps:.0f} bare_rps={bare_rps:.0f} "
          f"hot_p50_ms={pct(hot_lat, .5):.2f} hot_p99_ms={pct(hot_lat, .99):.2f}")


if __name__ == "__main__":
    main()
