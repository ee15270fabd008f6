"""The durable decision log's cost on the hot path (issue #16, `bench/decision_log.py`).

    python bench/decision_log.py [--database postgres|sqlite] [--workers 2] [--threads 16]
                                 [--connections 32] [--seconds 10]

Every cache-hit `POST /api/v1/named-credentials/{name}/token` writes one decision record, and its answer
leaves only once that record is committed (group commit: the request thread waits for the batch's commit;
one writer thread per process commits everything queued at once). This measures, under gunicorn (gthread)
with the load from `wrk` (Debian package `wrk`; a C load generator, so the client's CPU stays small):
- throughput and latency of cache-hit token requests (each one a committed record), and of `GET /healthz`
  (no record) for scale, alternating in rounds;
- `records_per_commit`: decision records written / database transactions committed during the token load
  (PostgreSQL's pg_stat_database; every other transaction, e.g. the landscape's re-reads, counts too, so this
  is a lower bound of the sharing);
- `sequential_p50_ms`: one connection, one request at a time: the cost of a commit of its own.

Starts, on free ports, and stops at the end: the fake authlib upstream (in a thread of this process) and govern
under gunicorn on a private PostgreSQL database (or a SQLite file), the local secret store.
Last line: `rps=... p50_ms=... p99_ms=... healthz_rps=... records_per_commit=... sequential_p50_ms=...`.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import GUNICORN, USER_SECRET, free_port, progress, wait_http  # noqa: E402

LUA = """wrk.method = "POST"
wrk.body = '{{"scope": "orders.read"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""


def wrk(url: str, connections: int, seconds: float, script: Path | None = None) -> dict:
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    lat = {q: _ms(re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)) for q in ("50", "99")}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else "", "requests": total}


def _ms(match) -> float:
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16, help="gthread threads per worker")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0, help="of each load, split into alternating rounds")
    ap.add_argument("--sequential", type=int, default=300)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (apt-get install -y wrk)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    import sqlalchemy as sa

    from govern.bootstrap import build_services
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.store.credential_secret_refs import CredentialSecretRefRepo
    from govern.config import load_settings
    from govern.domain.secret import Secret
    from govern.store.db import make_engine, upgrade
    from tests.factories import make_landscape
    from tests.fakes.oauth_server import FakeUpstream

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-declog-"))
    home = tmp / "instance"
    home.mkdir()
    drop_database = None
    if args.database == "postgres":
        from bench._pg import create_private_database

        database_url, drop_database = create_private_database(
            os.environ.get("GOVERN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    else:
        database_url = f"sqlite:///{tmp / 'govern.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    upstream = FakeUpstream().start()
    gunicorn = services = None
    try:
        services = build_services(load_settings({}, home=home, database_url=database_url))
        for step in services.init_steps:  # as `govern init` does: keys, first material
            step(services)
        make_landscape(services, token_url=upstream.token_url, client_id="hit-client",
                       url=upstream.url + "/api", user="sync-hit", client_secret=USER_SECRET)
        upstream.register_client("hit-client", secret="hit-upstream-secret", scope="orders.read")
        CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock).replace(
            "erp-cc", None, "client_secret", Secret("hit-upstream-secret"), expected_version=None)

        port = free_port()
        env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": database_url,
               "GOVERN_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        gunicorn_log = open(tmp / "gunicorn.log", "wb")
        gunicorn = subprocess.Popen([GUNICORN, "--workers", str(args.workers), "--worker-class", "gthread",
                                     "--threads", str(args.threads), "--bind", f"127.0.0.1:{port}",
                                     "--log-level", "warning", "govern.wsgi:app()"], cwd=str(ROOT), env=env,
                                    stdout=subprocess.DEVNULL, stderr=gunicorn_log, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", timeout=60, what="govern under gunicorn")
        resp = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                             auth=("sync-hit", USER_SECRET), timeout=30)
        if resp.status_code != 200:
            raise SystemExit(f"error: /oauth/token answered {resp.status_code}: {resp.text[:300]}")
        script = tmp / "token.lua"
        script.write_text(LUA.format(token=resp.json()["access_token"]))
        token_url = base + "/api/v1/named-credentials/erp-api/token"
        progress("warming up")
        wrk(token_url, args.connections, 3, script)

        def counts() -> tuple[int, int]:
            with engine.connect() as conn:
                records = conn.execute(sa.text("SELECT count(*) FROM decision")).scalar_one()
                commits = (conn.execute(sa.text("SELECT xact_commit FROM pg_stat_database "
                                                "WHERE datname = current_database()")).scalar_one()
                           if args.database == "postgres" else 0)
            return records, commits

        rounds, hits, bare = 4, [], []
        records = commits = 0
        for i in range(rounds):
            progress(f"round {i + 1}/{rounds}")
            bare.append(wrk(base + "/healthz", args.connections, args.seconds / rounds))
            if args.database == "postgres":
                time.sleep(0.6)  # pg_stat_database is refreshed by the stats collector about every 500 ms
            r0, c0 = counts()
            hits.append(wrk(token_url, args.connections, args.seconds / rounds, script))
            if args.database == "postgres":
                time.sleep(0.6)
            r1, c1 = counts()
            records, commits = records + (r1 - r0), commits + (c1 - c0)
        if any(h["non2xx"] for h in hits):
            raise SystemExit(f"error: {sum(h['non2xx'] for h in hits)} token requests were not answered 200")
        if records < sum(h["requests"] for h in hits):
            raise SystemExit(f"error: {records} records for {sum(h['requests'] for h in hits)} answered requests")
        progress("sequential requests")
        session, seq = requests.Session(), []
        headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        for _ in range(args.sequential):
            t0 = time.perf_counter()
            r = session.post(token_url, json={"scope": "orders.read"}, headers=headers, timeout=30)
            seq.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"error: a sequential request answered {r.status_code}")
        seq.sort()

        def median(key, runs):
            values = sorted(run[key] for run in runs)
            return (values[len(values) // 2] + values[(len(values) - 1) // 2]) / 2

        rps, p50, p99 = median("rps", hits), median("p50", hits), median("p99", hits)
        healthz = median("rps", bare)
        per_commit = records / commits if commits else float("nan")
        print(f"database={args.database} workers={args.workers}x{args.threads} connections={args.connections} "
              f"seconds={args.seconds} load_average={' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        bare_rounds = ", ".join(str(round(b["rps"])) for b in bare)
        hit_rounds = ", ".join(str(round(h["rps"])) for h in hits)
        print(f"GET /healthz (no record): {healthz:.0f} req/s (median of {rounds} rounds: {bare_rounds})")
        print(f"cache-hit token, each with a committed record: {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms "
              f"(rounds: {hit_rounds} req/s)")
        print(f"{records} records in {commits} database transactions during the token load "
              f"({per_commit:.1f} records per commit, at least)")
        print(f"one connection, one request at a time: p50 {seq[len(seq) // 2]:.2f} ms")
        print(f"rps={rps:.0f} p50_ms={p50:.2f} p99_ms={p99:.2f} healthz_rps={healthz:.0f} "
              f"records_per_commit={per_commit:.1f} sequential_p50_ms={seq[len(seq) // 2]:.2f}")
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
        engine.dispose()
        if drop_database is not None:
            drop_database()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
