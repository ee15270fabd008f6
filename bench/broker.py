"""Token broker throughput, latency and CPU under gunicorn, driven by wrk (issues #4 and #20, `bench/broker.py`).

    python bench/broker.py [--workers 2] [--threads N] [--seconds 5] [--rounds 2] [--connections 32]
                           [--database sqlite|postgres] [--redis] [--vault] [--log-level INFO]

Starts, on free ports, and stops at the end: the fake authlib upstream (tests/fakes/oauth_server.py, in a
thread of this process), govern under gunicorn with production's settings (govern.gunicorn_conf) on a
prepared instance (a migrated SQLite file or a private PostgreSQL database; Redis with a private key prefix
when --redis; OpenBao as the secret store when --vault), and an OpenBao dev server as the anchor.

The load is wrk's (closed loop, one wrk thread, --latency), never Python's: a `requests` client spent more
CPU per call than govern (issue #20). Measured in one run, in alternating rounds so that the machine's drift
hits each alike:
- govern's `GET /healthz` throughput (the same server's ceiling for a request that does nothing);
- cache-hit token issuance, `POST /api/v1/named-credentials/{name}/token` with a govern bearer token:
  throughput, p50/p99, and govern's CPU per request (utime+stime of the gunicorn master and workers from
  /proc/<pid>/stat, before and after);
- the anchor: an OpenBao KV v2 read (`GET /v1/secret/data/bench`, X-Vault-Token) at the same connections;
- the miss path on one connection: a cache-miss token request (its upstream tokens live 30 s, less than the
  credential's own 60 s leeway, so every request is a miss) against the upstream's own token call.
Every part of govern is the real one, wired by bootstrap as `govern serve` does.
Last line: `token_over_healthz=... token_over_openbao=... govern_cpu_ms_per_token=... p50_ms=... p99_ms=...
miss_added_p50_ms=... ...`.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import requests

from _common import (SERVERS, server_pythonpath, USER_SECRET, CpuMeter, Load, OpenBaoKv, load_average, progress, py_spy, start_server,
                     stop, uptime, wrk)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="gthread threads per worker (default: govern.gunicorn_conf's)")
    ap.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of /healthz, token and OpenBao")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--miss-seconds", type=int, default=3, help="length of the one-connection miss-path runs")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("--vault", action="store_true", help="an OpenBao dev server (transit mounted) as the secret store")
    ap.add_argument("--log-level", default="INFO", help="GOVERN_LOG_LEVEL of govern (INFO logs a line per request)")
    ap.add_argument("--profile", type=Path, help="also run py-spy (raw collapsed stacks) on each worker during one "
                                                 "more cache-hit token run, into this directory")
    ap.add_argument("--server", choices=SERVERS, default="gunicorn",
                    help="the WSGI server under govern (granian, waitress: importable, e.g. on PYTHONPATH)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more option for the server's command line (repeat), e.g. --server-arg=--keep-alive=5")
    args = ap.parse_args()
    # `timeout` and kill send SIGTERM: turn it into an exit, so that the finally block stops gunicorn.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    from govern.bootstrap import build_services
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.store.credential_secret_refs import CredentialSecretRefRepo
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
    gunicorn = services = store_bao = anchor = None
    store_env: dict[str, str] = {}
    try:
        if args.vault:
            from tests.fixtures_openbao import OpenBao, bao_binary

            store_bao = OpenBao(bao_binary(), tmp / "openbao-store").start()
            store_bao.client().sys.enable_secrets_engine("transit", path="transit")  # cached tokens sealed by Vault
            store_env = {"GOVERN_SECRET_STORE": "vault", "GOVERN_VAULT_ADDR": store_bao.addr,
                         "GOVERN_VAULT_TOKEN": store_bao.token}
        settings = load_settings(store_env, home=home, database_url=database_url, redis_url=redis_url,
                                 redis_prefix=redis_prefix)
        services = build_services(settings)
        for step in services.init_steps:  # as `govern init` does: keys, first material
            step(services)
        secrets = CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock)
        for tag in ("hit", "miss"):
            make_landscape(services, system=f"erp-{tag}", credential=f"erp-{tag}-cc",
                           token_url=upstream.token_url, client_id=f"{tag}-client", named_credential=f"erp-{tag}",
                           url=upstream.url + "/api", user=f"sync-{tag}", client_secret=USER_SECRET,
                           permission_set=f"ps-{tag}", ps_scopes=("orders.read",))
            upstream.register_client(f"{tag}-client", secret=f"{tag}-upstream-secret", scope="orders.read")
            secrets.replace(f"erp-{tag}-cc", None, "client_secret", Secret(f"{tag}-upstream-secret"), expected_version=None)
        # The miss credential's own refresh leeway (60 s) exceeds its tokens' life (30 s): each request is a miss.
        upstream.client_ttls["miss-client"] = 30
        import sqlalchemy as sa

        from govern.store.db import session_scope
        from govern.store.tables import ExternalCredential

        with session_scope(services.sessions) as db:
            db.execute(sa.update(ExternalCredential).where(ExternalCredential.external_id == "erp-miss-cc")
                       .values(leeway_seconds=60))

        env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": database_url,
               "GOVERN_LOG_LEVEL": args.log_level, "PYTHONPATH": server_pythonpath()}
        if redis_url:
            env.update(GOVERN_REDIS_URL=redis_url, GOVERN_REDIS_PREFIX=redis_prefix)
        env.update(store_env)
        gunicorn, base = start_server(args.server, "govern.wsgi:app()", env, tmp / "gunicorn.log", workers=args.workers,
                                       threads=args.threads or None, extra=args.server_arg)
        progress("govern up")
        anchor = OpenBaoKv(tmp / "openbao-anchor")
        progress("OpenBao anchor up")

        tokens = {}
        for tag in ("hit", "miss"):
            resp = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                                 auth=(f"sync-{tag}", USER_SECRET), timeout=30)
            if resp.status_code != 200:
                raise SystemExit(f"error: /oauth/token answered {resp.status_code}: {resp.text[:300]}")
            tokens[tag] = resp.json()["access_token"]

        def token_load(tag: str, seconds: int, connections: int, meter: CpuMeter | None = None) -> Load:
            return wrk(f"{base}/api/v1/named-credentials/erp-{tag}/token", seconds=seconds, connections=connections,
                       method="POST", body=json.dumps({"scope": "orders.read"}), tmp=tmp, meter=meter,
                       headers={"Authorization": f"Bearer {tokens[tag]}", "Content-Type": "application/json"})

        meter = CpuMeter(gunicorn.pid)
        # Warm up with many connections (each may land on another worker), so every worker holds the hit token.
        progress("warming up")
        token_load("hit", 2, args.connections)
        wrk(base + "/healthz", seconds=1, connections=args.connections, tmp=tmp)
        calls_before = upstream.count("client_credentials")
        runs: dict[str, list[Load]] = {"healthz": [], "token": [], "openbao": []}
        for i in range(args.rounds):
            progress(f"round {i + 1} of {args.rounds}: /healthz, cache-hit token, OpenBao KV read")
            runs["healthz"].append(wrk(base + "/healthz", seconds=args.seconds, connections=args.connections,
                                       tmp=tmp, meter=meter))
            runs["token"].append(token_load("hit", args.seconds, args.connections, meter))
            runs["openbao"].append(wrk(anchor.addr + anchor.path, seconds=args.seconds, connections=args.connections,
                                       tmp=tmp, headers={"X-Vault-Token": anchor.token}))
        hit_calls = upstream.count("client_credentials") - calls_before

        if args.profile:
            progress(f"py-spy on the workers during {args.seconds} s of cache-hit token load")
            spies = py_spy([p for p in meter.pids if p != gunicorn.pid], args.seconds + 1, args.profile)
            token_load("hit", args.seconds, args.connections)
            for spy in spies:
                spy.wait(60)
        progress("the miss path, one connection")
        basic = base64.b64encode(b"miss-client:miss-upstream-secret").decode()
        direct = wrk(upstream.token_url, seconds=args.miss_seconds, connections=1, method="POST", tmp=tmp,
                     body="grant_type=client_credentials",
                     headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
        hit_one = token_load("hit", args.miss_seconds, 1, meter)
        before = upstream.count("client_credentials")
        miss = token_load("miss", args.miss_seconds, 1)
        miss_calls = upstream.count("client_credentials") - before

        warnings = [line for line in (tmp / "gunicorn.log").read_text(errors="replace").splitlines()
                    if '"level": "' in line and '"level": "info"' not in line.lower()
                    and "refresh leeway leaves less than half" not in line]  # the miss credential's, on purpose
        if warnings:
            progress(f"{len(warnings)} warning lines from govern; the first: {warnings[0][:300]}")
        failed = {name: sum(r.errors for r in rs) for name, rs in runs.items()}
        failed.update(direct=direct.errors, hit_one=hit_one.errors, miss=miss.errors)
        if any(failed.values()):
            raise SystemExit(f"error: failed answers: {failed}")
        if miss_calls < miss.requests:
            raise SystemExit(f"error: only {miss_calls} of {miss.requests} miss requests reached the upstream")

        def mean(name: str, attr: str) -> float:
            return sum(getattr(r, attr) for r in runs[name]) / len(runs[name])

        healthz_rps, token_rps, bao_rps = mean("healthz", "rps"), mean("token", "rps"), mean("openbao", "rps")
        cpu_token = sum(r.cpu_s for r in runs["token"]) * 1000 / sum(r.requests for r in runs["token"])
        cpu_healthz = sum(r.cpu_s for r in runs["healthz"]) * 1000 / sum(r.requests for r in runs["healthz"])
        p50, p99 = mean("token", "p50_ms"), mean("token", "p99_ms")
        print(f"uptime: {uptime()}")
        print(f"store={services.secret_store.kind} cache_cipher={services.cache_cipher.mode} log_level={args.log_level} "
              f"database={args.database} redis={bool(redis_url)} server={args.server} {' '.join(args.server_arg)} workers={args.workers} threads={args.threads or 'conf'} "
              f"connections={args.connections} seconds={args.seconds}x{args.rounds} cores={os.cpu_count()}")
        for name, label in (("healthz", "govern GET /healthz"), ("token", "cache-hit token   "),
                            ("openbao", "OpenBao KV v2 read")):
            for r in runs[name]:
                print(f"{label}  {r.line()}{r.cpu_line()}")
        print(f"cache-hit token: {hit_calls} upstream calls during the rounds")
        print(f"one connection: upstream's own token call {direct.line()}")
        print(f"one connection: cache-hit token            {hit_one.line()}{hit_one.cpu_line()}")
        print(f"one connection: cache-miss token           {miss.line()}")
        print(f"load average at the end: {load_average()}")
        print(f"server={args.server} token_over_healthz={token_rps / healthz_rps:.2f} token_over_openbao={token_rps / bao_rps:.2f} "
              f"govern_cpu_ms_per_token={cpu_token:.3f} govern_cpu_ms_per_healthz={cpu_healthz:.3f} "
              f"token_rps={token_rps:.0f} healthz_rps={healthz_rps:.0f} openbao_rps={bao_rps:.0f} "
              f"p50_ms={p50:.2f} p99_ms={p99:.2f} miss_added_p50_ms={miss.p50_ms - direct.p50_ms:.2f}")
    finally:
        stop(gunicorn, group=True)
        upstream.stop()
        if anchor is not None:
            anchor.stop()
        if services is not None:
            services.close()
        if store_bao is not None:
            store_bao.stop()
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
