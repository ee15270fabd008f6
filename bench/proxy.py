"""Proxy overhead: proxied latency minus direct latency to the same upstream, p50 and p99, 16 connections.

    /work/venv/bin/python bench/proxy.py [--requests 2000] [--connections 16] [--rate R] [--workers 2]

Starts (all on free ports, all stopped at the end):
- the upstream: a tiny WSGI app answering a small JSON document, under gunicorn (gthread);
- govern under gunicorn with production's settings (`-c python:govern.gunicorn_conf`: gthread, 16 threads
  per worker unless `--threads`), `govern.wsgi:app()` with everything real and wired by bootstrap: a
  prepared SQLite instance with an api_key_header named credential, its key in the local secret store,
  one integration user with a permission set; the caller's govern token comes from `POST /oauth/token`,
  and each proxied call is authenticated (JWT), decided (permission sets + Cedar guardrails) and written
  to the hash-chained decision log.
Then 16 client threads, each with its own keep-alive connection, send the same GET directly and
through the proxy: in a closed loop by default (each connection sends again as soon as it is answered,
so on a small machine this measures queueing behind the CPU as much as govern's own latency), or paced
at `--rate` requests/s in all (latency counted from each request's scheduled time).
The CPU seconds each process used during each run (from /proc) are printed per call.
Last line: `overhead_p50_ms=... overhead_p99_ms=... govern_cpu_ms_per_call=...`.

    --rate 300         paced instead of closed loop
    --server granian   govern under granian instead of gunicorn (needs `pip install granian`; a comparison
                       only: granian gives the app no raw request path, so encoded slashes in proxied
                       paths would reach the upstream decoded; govern ships with gunicorn)
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GUNICORN = str(Path(PY).with_name("gunicorn"))
USER_SECRET = "bench-user-client-secret-value"
API_KEY = "bench-api-key-value"

UPSTREAM_APP = '''
import json
BODY = json.dumps({"id": "001", "name": "Acme", "status": "ok", "items": list(range(20))}).encode()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
'''

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, deadline_s: float = 30.0, headers=None) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1, headers=headers).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")


def prepare_instance(home: Path, upstream_url: str, log_level: str) -> dict[str, str]:
    """A migrated instance with the landscape and the API key stored, as `govern init` + apply + secrets put."""
    sys.path.insert(0, str(ROOT))
    import sqlalchemy as sa

    from govern.bootstrap import build_services
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.config import load_settings
    from govern.domain.secret import Secret
    from govern.store.db import session_scope, upgrade
    from govern.store.tables import ExternalCredential
    from tests.factories import make_landscape

    home.mkdir(parents=True)
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": f"sqlite:///{home / 'govern.db'}",
           "GOVERN_LOG_LEVEL": log_level, "PYTHONPATH": str(ROOT)}
    env.pop("GOVERN_REDIS_URL", None)
    services = build_services(load_settings({k: v for k, v in env.items() if k.startswith("GOVERN_")}))
    try:
        upgrade(services.engine)
        for step in services.init_steps:
            step(services)
        make_landscape(services.sessions, system="bench-erp", credential="bench-key", protocol="api_key_header",
                       named_credential="bench-api", url=f"{upstream_url}/api", user="bench-sync",
                       client_secret=USER_SECRET, methods=("GET",), paths=("/accounts/**",))
        with session_scope(services.sessions) as db:
            db.execute(sa.update(ExternalCredential).where(ExternalCredential.external_id == "bench-key")
                       .values(header_name="X-Api-Key"))
        CredentialSecrets(services.sessions, services.secret_store, services.clock).replace(
            "bench-key", None, "api_key", Secret(API_KEY), expected_version=None)
    finally:
        services.close()
    return env


def load(url: str, headers: dict, total: int, connections: int, rate: float = 0.0) -> list[float]:
    """Closed loop (rate 0): each connection sends its next request when the last one is answered.
    Paced (rate > 0 requests/s in all): each connection sends on a fixed schedule, and latency is counted
    from the scheduled time, so a server that falls behind is charged for the wait (no coordinated omission)."""
    per_thread = total // connections
    latencies: list[float] = []
    lock = threading.Lock()
    errors = []
    interval = connections / rate if rate else 0.0
    t0 = time.perf_counter() + 0.05

    def worker(index: int):
        session = requests.Session()
        mine = []
        for k in range(per_thread):
            start = time.perf_counter()
            if interval:
                start = t0 + (index / connections + k) * interval
                delay = start - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            r = session.get(url, headers=headers)
            _ = r.content
            mine.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                errors.append(r.status_code)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} non-200 answers, e.g. {errors[:3]}")
    return latencies


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's master and workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for govern")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="requests per second in all, paced over the connections (default: closed loop)")
    parser.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn", help="govern's HTTP server")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per govern worker (default: govern.gunicorn_conf's, GOVERN_WEB_THREADS or 16)")
    parser.add_argument("--log-level", default="INFO", help="GOVERN_LOG_LEVEL of govern (INFO logs a line per request)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-proxy-"))
    procs = []
    try:
        (tmp / "bench_upstream.py").write_text(UPSTREAM_APP)
        up_port, gv_port = free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        env = prepare_instance(tmp / "instance", upstream_url, args.log_level)
        common = ["-k", "gthread", "--threads", str(args.connections), "--log-level", "warning",
                  "--keep-alive", "30", "--chdir", str(tmp)]
        procs.append(subprocess.Popen([GUNICORN, "-w", "1", *common, "-b", f"127.0.0.1:{up_port}",
                                       "bench_upstream:app"], env=env))
        gv_log = open(tmp / "govern.log", "wb")  # a file: an unread pipe would block the workers' logging
        if args.server == "granian":
            threads = args.threads or args.connections
            server = [str(Path(PY).with_name("granian")), "--interface", "wsgi", "--factory", "--workers",
                      str(args.workers), "--blocking-threads", str(threads),
                      "--host", "127.0.0.1", "--port", str(gv_port), "--log-level", "warning", "govern.wsgi:app"]
        else:
            from govern import gunicorn_conf  # production's settings; reads GOVERN_WEB_THREADS as govern will

            threads = args.threads or gunicorn_conf.threads
            server = [GUNICORN, "-c", "python:govern.gunicorn_conf", "-w", str(args.workers), "--threads", str(threads),
                      "-b", f"127.0.0.1:{gv_port}", "--log-level", "warning", "govern.wsgi:app()"]
        procs.append(subprocess.Popen(server, env=env, cwd=str(ROOT), stderr=gv_log))
        direct_url = f"{upstream_url}/api/accounts/001"
        proxied_url = f"http://127.0.0.1:{gv_port}/api/v1/named-credentials/bench-api/proxy/accounts/001"
        wait_ready(direct_url)
        wait_ready(f"http://127.0.0.1:{gv_port}/healthz")
        resp = requests.post(f"http://127.0.0.1:{gv_port}/oauth/token", auth=("bench-sync", USER_SECRET),
                             data={"grant_type": "client_credentials", "scope": "orders.read"}, timeout=30)
        if resp.status_code != 200:
            raise SystemExit(f"error: /oauth/token answered {resp.status_code}: {resp.text[:300]}")
        auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}

        warm = max(args.connections * 20, args.requests // 5)
        load(direct_url, {}, warm, args.connections)
        load(proxied_url, auth, warm, args.connections)
        upstream_pid, govern_pid = procs[0].pid, procs[1].pid
        cpu_before = process_tree_cpu_s(upstream_pid), process_tree_cpu_s(govern_pid), time.process_time()
        direct = load(direct_url, {}, args.requests, args.connections, args.rate)
        cpu_mid = process_tree_cpu_s(upstream_pid), process_tree_cpu_s(govern_pid), time.process_time()
        proxied = load(proxied_url, auth, args.requests, args.connections, args.rate)
        cpu_after = process_tree_cpu_s(upstream_pid), process_tree_cpu_s(govern_pid), time.process_time()
        per_call = lambda a, b, i: (b[i] - a[i]) * 1000 / args.requests  # noqa: E731

        print("server: upstream gunicorn gthread 1 worker, %d threads; govern %s %d workers, %d threads each; "
              "%d cores; GOVERN_LOG_LEVEL=%s; load average %s"
              % (args.connections, "gunicorn gthread" if args.server == "gunicorn" else "granian", args.workers,
                 threads, os.cpu_count() or 0, args.log_level, " ".join(f"{x:.1f}" for x in os.getloadavg())))
        print(f"requests per run: {len(direct)} direct, {len(proxied)} proxied, {args.connections} connections")
        for name, values in (("direct", direct), ("proxied", proxied)):
            print(f"{name:8s} p50={pct(values, 50):.2f} ms  p99={pct(values, 99):.2f} ms  "
                  f"mean={statistics.fmean(values):.2f} ms")
        print(f"CPU per call, direct run:  client {per_call(cpu_before, cpu_mid, 2):.2f} ms, "
              f"upstream {per_call(cpu_before, cpu_mid, 0):.2f} ms")
        print(f"CPU per call, proxied run: client {per_call(cpu_mid, cpu_after, 2):.2f} ms, "
              f"upstream {per_call(cpu_mid, cpu_after, 0):.2f} ms, govern {per_call(cpu_mid, cpu_after, 1):.2f} ms")
        mode = f"paced at {args.rate:g} requests/s" if args.rate else "closed loop"
        print(f"mode: {mode}")
        print(f"overhead_p50_ms={pct(proxied, 50) - pct(direct, 50):.2f} "
              f"overhead_p99_ms={pct(proxied, 99) - pct(direct, 99):.2f} "
              f"govern_cpu_ms_per_call={per_call(cpu_mid, cpu_after, 1):.2f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
