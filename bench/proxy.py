"""Proxy overhead: proxied latency minus direct latency to the same upstream, p50 and p99, 16 connections.

    /work/venv/bin/python bench/proxy.py [--requests 2000] [--connections 16]

Starts (all on free ports, all stopped at the end):
- the upstream: a tiny WSGI app answering a small JSON document, under gunicorn (gthread);
- govern under gunicorn (gthread) with a prepared instance: a SQLite database with one system, an
  api_key_header credential (so no upstream OAuth is needed) and its key in an in-memory secret store.
  The authz part (govern access tokens, policy decisions, the hash-chained decision log) is not in
  this tree, so the bench app module below, written to a temporary folder and used ONLY here, plugs
  in a minimal bearer-token authenticator, an allow-all decider and an in-memory decision log.
  Real ones will add their own cost; measure again once they are wired.
Then 16 client threads, each with its own keep-alive connection, send the same GET directly and
through the proxy. Last line: `overhead_p50_ms=... overhead_p99_ms=...`.
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
import textwrap
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GUNICORN = str(Path(PY).with_name("gunicorn"))
TOKEN = "bench-caller-token"

UPSTREAM_APP = '''
import json
BODY = json.dumps({"id": "001", "name": "Acme", "status": "ok", "items": list(range(20))}).encode()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
'''

GOVERN_APP = '''
"""Bench-only composition: govern's real app, proxy, database and cache; minimal authz seams."""
import os
from govern.app import create_app
from govern.bootstrap import build_services
from govern.config import load_settings
from govern.domain.access import AccessDecision, Caller
from govern.domain.secret import Secret
from govern.errors import Unauthorized
from tests.fakes.secret_store import MemorySecretStore

class BenchAuthenticator:
    def authenticate(self, authorization, peer_ip, forwarded_for):
        if authorization != "Bearer " + os.environ["BENCH_CALLER_TOKEN"]:
            raise Unauthorized("bench token required")
        return Caller(integration_user="bench-sync", scopes=(), source_ip=peer_ip)

class AllowAll:
    def decide(self, request):
        return AccessDecision(True, ("bench",), principal="default")

class MemoryLog:
    def __init__(self):
        self.count = 0
    def append(self, request, decision, **fields):
        self.count += 1

settings = load_settings()
services = build_services(settings)
services.authenticator = BenchAuthenticator()
services.decider = AllowAll()
services.decision_log = MemoryLog()
store = MemorySecretStore()
store.put("govern/credential/bench-key/default/api_key", Secret(os.environ["BENCH_API_KEY"]))
services.secret_store = store
app = create_app(services=services)
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


def prepare_instance(home: Path, upstream_url: str) -> dict[str, str]:
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": f"sqlite:///{home / 'govern.db'}",
           "GOVERN_LOG_LEVEL": "WARNING", "GOVERN_SECRET_KEY": "b" * 48, "PYTHONPATH": f"{home}:{ROOT}",
           "BENCH_CALLER_TOKEN": TOKEN, "BENCH_API_KEY": "bench-api-key-value"}
    env.pop("GOVERN_REDIS_URL", None)
    script = textwrap.dedent(f'''
        from govern.config import load_settings
        from govern.store.db import make_engine, upgrade, make_session_factory, session_scope
        from govern.store.tables import System, ExternalCredential, Principal, NamedCredential, SecretRef
        s = load_settings()
        engine = make_engine(s.database_url); upgrade(engine)
        sessions = make_session_factory(engine)
        with session_scope(sessions) as db:
            system = System(external_id="bench-erp", name="bench"); db.add(system); db.flush()
            cred = ExternalCredential(external_id="bench-key", system_id=system.id, protocol="api_key_header",
                                      header_name="X-Api-Key"); db.add(cred); db.flush()
            db.add(Principal(credential_id=cred.id, name="default"))
            db.add(NamedCredential(external_id="bench-api", credential_id=cred.id, url="{upstream_url}/api",
                                   timeout_seconds=5, allowed_methods=["GET"], allowed_paths=["/**"]))
            db.add(SecretRef(external_id="credential/bench-key/default/api_key", owner_kind="credential",
                             owner="bench-key", principal="default", field="api_key",
                             path="govern/credential/bench-key/default/api_key"))
    ''')
    subprocess.run([PY, "-c", script], env=env, check=True, cwd=ROOT)
    return env


def load(url: str, headers: dict, total: int, connections: int) -> list[float]:
    per_thread = total // connections
    latencies: list[float] = []
    lock = threading.Lock()
    errors = []

    def worker():
        session = requests.Session()
        mine = []
        for _ in range(per_thread):
            start = time.perf_counter()
            r = session.get(url, headers=headers)
            _ = r.content
            mine.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                errors.append(r.status_code)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} non-200 answers, e.g. {errors[:3]}")
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for govern")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-proxy-"))
    procs = []
    try:
        (tmp / "bench_upstream.py").write_text(UPSTREAM_APP)
        (tmp / "bench_govern_app.py").write_text(GOVERN_APP)
        up_port, gv_port = free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        env = prepare_instance(tmp / "instance", upstream_url)
        common = ["-k", "gthread", "--threads", str(args.connections), "--log-level", "warning",
                  "--keep-alive", "30", "--chdir", str(tmp)]
        procs.append(subprocess.Popen([GUNICORN, "-w", "1", *common, "-b", f"127.0.0.1:{up_port}",
                                       "bench_upstream:app"], env=env))
        procs.append(subprocess.Popen([GUNICORN, "-w", str(args.workers), *common, "-b", f"127.0.0.1:{gv_port}",
                                       "bench_govern_app:app"], env=env))
        direct_url = f"{upstream_url}/api/accounts/001"
        proxied_url = f"http://127.0.0.1:{gv_port}/api/v1/named-credentials/bench-api/proxy/accounts/001"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        wait_ready(direct_url)
        wait_ready(f"http://127.0.0.1:{gv_port}/healthz")

        warm = max(args.connections * 20, args.requests // 5)
        load(direct_url, {}, warm, args.connections)
        load(proxied_url, auth, warm, args.connections)
        direct = load(direct_url, {}, args.requests, args.connections)
        proxied = load(proxied_url, auth, args.requests, args.connections)

        print("server: gunicorn gthread (upstream 1 worker; govern %d workers), %d threads each; %d cores"
              % (args.workers, args.connections, os.cpu_count() or 0))
        print(f"requests per run: {len(direct)} direct, {len(proxied)} proxied, {args.connections} connections")
        for name, values in (("direct", direct), ("proxied", proxied)):
            print(f"{name:8s} p50={pct(values, 50):.2f} ms  p99={pct(values, 99):.2f} ms  "
                  f"mean={statistics.fmean(values):.2f} ms")
        print(f"overhead_p50_ms={pct(proxied, 50) - pct(direct, 50):.2f} "
              f"overhead_p99_ms={pct(proxied, 99) - pct(direct, 99):.2f}")
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
