"""Token broker throughput and latency under gunicorn (issue #4, `bench/broker.py`).

    /work/venv/bin/python bench/broker.py [--workers 4] [--seconds 5] [--connections 32]
                                          [--database sqlite|postgres] [--redis]

Starts, on free ports, and stops at the end: the fake authlib upstream (tests/fakes/oauth_server.py, in a
thread of this process) and govern under gunicorn (gthread) on a prepared instance (a migrated SQLite file,
or a private PostgreSQL database; Redis with a private key prefix when --redis).

Measures, in one run with the same app and server settings:
- `ratio`: cache-hit token issuance throughput / a bare endpoint's (`GET /healthz`), 32 connections;
- `p50_ms`, `p99_ms`: cache-hit token issuance latency at 32 connections;
- `miss_added_p50_ms`: p50 of a cache-miss token request (sequential) minus the p50 of the upstream's own
  token call (the same fake, called directly, sequential). The miss credential's upstream tokens live 30 s,
  less than the 60 s leeway, so each of its requests is a miss.

Every part is the real one, wired by bootstrap as `govern serve` does: `POST /oauth/token` for the govern token,
then `POST /api/v1/named-credentials/{name}/token` (authenticate, Cedar decision, decision log, upstream token).
It replaces bench/authz_hot_path.py, which measured the same endpoint against `/healthz` with a stand-in
upstream token source.
Last line: `ratio=... p50_ms=... p99_ms=... miss_added_p50_ms=...`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
GUNICORN = str(Path(PY).with_name("gunicorn"))
USER_SECRET = "bench-user-client-secret-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"error: {what} did not come up in {timeout:.0f}s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_load(call, connections: int, seconds: float) -> tuple[float, list[float], int]:
    """`connections` threads, each with its own keep-alive Session, calling for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    barrier = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        session = requests.Session()
        barrier.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            resp = call(session)
            latencies[i].append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    [t.start() for t in threads]
    stop_at[0] = time.perf_counter() + seconds
    barrier.wait()
    started = time.perf_counter()
    [t.join() for t in threads]
    elapsed = time.perf_counter() - started
    flat = [x for per in latencies for x in per]
    return len(flat) / elapsed, flat, sum(errors)


def sequential(call, n: int) -> list[float]:
    session = requests.Session()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = call(session)
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise SystemExit(f"error: a sequential request answered {resp.status_code}: {resp.text[:200]}")
    return out


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8, help="gthread threads per worker")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--misses", type=int, default=200)
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("--vault", action="store_true", help="an OpenBao dev server (transit mounted) as the secret store")
    ap.add_argument("--log-level", default="INFO", help="GOVERN_LOG_LEVEL of govern (INFO logs a line per request)")
    args = ap.parse_args()
    # `timeout` and kill send SIGTERM: turn it into an exit, so that the finally block stops gunicorn.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    from govern.bootstrap import build_services
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.config import load_settings
    from govern.domain.secret import Secret
    from govern.store.db import make_engine, upgrade
    from tests.factories import make_landscape
    from tests.fakes.oauth_server import FakeUpstream

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-broker-"))
    home = tmp / "instance"
    home.mkdir()
    drop_database = None
    if args.database == "postgres":
        from bench._pg import create_private_database

        database_url, drop_database = create_private_database(
            os.environ.get("GOVERN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    else:
        database_url = f"sqlite:///{tmp / 'govern.db'}"
    redis_url = os.environ.get("GOVERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0") if args.redis else None
    redis_prefix = f"govern-bench:{uuid.uuid4().hex[:8]}:"
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()

    upstream = FakeUpstream().start()
    gunicorn = None
    services = None
    bao = None
    store_env: dict[str, str] = {}
    try:
        if args.vault:
            from tests.fixtures_openbao import OpenBao, bao_binary

            bao = OpenBao(bao_binary(), tmp / "openbao").start()
            bao.client().sys.enable_secrets_engine("transit", path="transit")  # cached tokens sealed by Vault
            store_env = {"GOVERN_SECRET_STORE": "vault", "GOVERN_VAULT_ADDR": bao.addr, "GOVERN_VAULT_TOKEN": bao.token}
        settings = load_settings(store_env, home=home, database_url=database_url, redis_url=redis_url,
                                 redis_prefix=redis_prefix)
        services = build_services(settings)
        for step in services.init_steps:  # as `govern init` does: keys, first material
            step(services)
        secrets = CredentialSecrets(services.sessions, services.secret_store, services.clock)
        for tag in ("hit", "miss"):
            make_landscape(services.sessions, system=f"erp-{tag}", credential=f"erp-{tag}-cc",
                           token_url=upstream.token_url, client_id=f"{tag}-client", named_credential=f"erp-{tag}",
                           url=upstream.url + "/api", user=f"sync-{tag}", client_secret=USER_SECRET,
                           permission_set=f"ps-{tag}", ps_scopes=("orders.read",))
            upstream.register_client(f"{tag}-client", secret=f"{tag}-upstream-secret", scope="orders.read")
            secrets.replace(f"erp-{tag}-cc", None, "client_secret", Secret(f"{tag}-upstream-secret"), expected_version=None)
        upstream.client_ttls["miss-client"] = 30  # below the 60 s leeway: every request for it is a miss

        port = free_port()
        env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": database_url,
               "GOVERN_LOG_LEVEL": args.log_level, "PYTHONPATH": str(ROOT)}
        if redis_url:
            env.update(GOVERN_REDIS_URL=redis_url, GOVERN_REDIS_PREFIX=redis_prefix)
        env.update(store_env)
        app_spec = "govern.wsgi:app()"
        # A file, not a pipe: an unread pipe fills up and blocks the workers' logging.
        gunicorn_log = open(tmp / "gunicorn.log", "wb")
        gunicorn = subprocess.Popen([GUNICORN, "--workers", str(args.workers), "--worker-class", "gthread",
                                     "--threads", str(args.threads), "--bind", f"127.0.0.1:{port}",
                                     "--log-level", "warning", app_spec], cwd=str(ROOT), env=env,
                                    stdout=subprocess.DEVNULL, stderr=gunicorn_log, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(base + "/healthz", timeout=1).status_code == 200, 60, "govern under gunicorn")
        progress("govern up")

        tokens = {}
        for tag in ("hit", "miss"):
            resp = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                                 auth=(f"sync-{tag}", USER_SECRET), timeout=30)
            if resp.status_code != 200:
                raise SystemExit(f"error: /oauth/token answered {resp.status_code}: {resp.text[:300]}")
            tokens[tag] = resp.json()["access_token"]
        path = base + "/api/v1/named-credentials/erp-{}/token"

        def ask(tag):
            url, headers = path.format(tag), {"Authorization": f"Bearer {tokens[tag]}"}
            return lambda s: s.post(url, json={"scope": "orders.read"}, headers=headers, timeout=30)

        # Warm up on fresh connections (each one may land on another worker), so every worker has cached the hit token.
        progress("warming up")
        warm = ask("hit")
        run_load(lambda s: warm(requests), args.connections, 2.0)
        calls_before = upstream.count("client_credentials")
        progress("measuring throughput")
        # Alternate the two loads in short rounds, so that drift in the machine's load hits both alike.
        bare_n = hit_n = 0.0
        bare_err = hit_err = 0
        hit_lat: list[float] = []
        rounds = 4
        for _ in range(rounds):
            rps, _, err = run_load(lambda s: s.get(base + "/healthz", timeout=30), args.connections, args.seconds / rounds)
            bare_n, bare_err = bare_n + rps, bare_err + err
            rps, lat, err = run_load(ask("hit"), args.connections, args.seconds / rounds)
            hit_n, hit_err = hit_n + rps, hit_err + err
            hit_lat += lat
        bare_rps, hit_rps = bare_n / rounds, hit_n / rounds
        hit_calls = upstream.count("client_credentials") - calls_before

        warnings = [line for line in (tmp / "gunicorn.log").read_text(errors="replace").splitlines() if '"level": "' in line]
        if warnings:
            progress(f"{len(warnings)} log lines from govern; the first: {warnings[0][:300]}")
        if bare_err or hit_err:
            raise SystemExit(f"error: {bare_err} bare and {hit_err} token requests failed")
        progress("measuring the miss path")
        direct = sequential(lambda s: s.post(upstream.token_url, data={"grant_type": "client_credentials"},
                                             auth=("miss-client", "miss-upstream-secret"), timeout=30), args.misses)
        hit_seq = sequential(ask("hit"), args.misses)
        before = upstream.count("client_credentials")
        miss = sequential(ask("miss"), args.misses)
        miss_calls = upstream.count("client_credentials") - before
        if miss_calls < args.misses:
            raise SystemExit(f"error: only {miss_calls} of {args.misses} miss requests reached the upstream")

        ratio = hit_rps / bare_rps
        p50, p99 = pct(hit_lat, 50), pct(hit_lat, 99)
        miss_added = statistics.median(miss) - statistics.median(direct)
        print(f"store={services.secret_store.kind} cache_cipher={services.cache_cipher.mode} "
              f"load_average={' '.join(f'{x:.1f}' for x in os.getloadavg())} log_level={args.log_level} database={args.database} redis={bool(redis_url)} "
              f"workers={args.workers}x{args.threads} connections={args.connections} seconds={args.seconds}")
        print(f"bare /healthz: {bare_rps:.0f} req/s ({bare_err} errors)")
        print(f"cache-hit token: {hit_rps:.0f} req/s ({hit_err} errors, {hit_calls} upstream calls), "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        print(f"upstream's own token call p50 {statistics.median(direct):.2f} ms; cache-miss token request p50 "
              f"{statistics.median(miss):.2f} ms; cache-hit token request p50 (sequential) {statistics.median(hit_seq):.2f} ms")
        print(f"ratio={ratio:.2f} p50_ms={p50:.2f} p99_ms={p99:.2f} miss_added_p50_ms={miss_added:.2f}")
    finally:
        if gunicorn is not None:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            try:
                gunicorn.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(gunicorn.pid, signal.SIGKILL)
        upstream.stop()
        if services is not None:
            services.close()
        if bao is not None:
            bao.stop()
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(match=redis_prefix + "*"):
                client.delete(key)
        if drop_database is not None:
            drop_database()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
