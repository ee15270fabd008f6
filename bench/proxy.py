"""Proxy throughput, latency, overhead and CPU, driven by wrk and hey (issues #4 and #20, `bench/proxy.py`).

    python bench/proxy.py [--workers 2] [--threads N] [--seconds 5] [--rounds 2] [--connections 16]
                          [--rate 300] [--rate-seconds 10] [--log-level INFO]

Starts, on free ports, and stops at the end:
- the upstream: nginx (Debian's, foreground, generated config in a temp dir) answering a small JSON document
  on `/api/accounts/...` only when the request carries the right `X-Api-Key` (else 401), so that every
  figure below also proves the key was injected. A C upstream keeps the upstream's own CPU small: on two
  cores a Python upstream would take a share of the CPU govern needs;
- the anchor: the same nginx proxying to that upstream with the key injected (`proxy_set_header`), over
  keep-alive upstream connections;
- govern under gunicorn with production's settings (govern.gunicorn_conf), everything real and wired by
  bootstrap: a prepared SQLite instance with an api_key_header named credential, its key in the local secret
  store, one integration user with a permission set; the caller's govern token comes from `POST /oauth/token`,
  and each proxied call is authenticated (JWT), decided and written to the hash-chained decision log.
Measured in one run (wrk closed loop, one wrk thread, --latency; rounds alternate so drift hits each alike):
govern's `GET /healthz`, the proxied `GET .../proxy/accounts/001` (with govern's CPU per call from
/proc/<pid>/stat of the gunicorn master and workers), the upstream directly, and nginx's proxy. Then the
overhead at a fixed rate on one connection (hey -c 1 -q RATE): proxied minus direct, p50 and p99, and
nginx's proxy minus direct for comparison.
Last line: `proxy_over_healthz=... proxy_over_nginx=... govern_cpu_ms_per_call=... overhead_p50_ms=...
overhead_p99_ms=... ...`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import requests

from _common import (SERVERS, server_pythonpath, USER_SECRET, CpuMeter, Load, free_port, hey_fixed_rate, load_average, progress, py_spy,
                     start_server, start_nginx, stop, uptime, wait_http, wrk)

API_KEY = "bench-api-key-value"
BODY = '{"id": "001", "name": "Acme", "status": "ok", "items": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]}'

NGINX_SERVERS = """
    server {{
        listen 127.0.0.1:{up_port};
        location /api/ {{
            if ($http_x_api_key != "{key}") {{ return 401; }}
            default_type application/json;
            return 200 '{body}';
        }}
    }}
    upstream bench_upstream {{
        server 127.0.0.1:{up_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{anchor_port};
        location /api/ {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Api-Key "{key}";
        }}
    }}
"""


def prepare_instance(home: Path, upstream_url: str, log_level: str) -> dict[str, str]:
    """A migrated instance with the landscape and the API key stored, as `govern init` + apply + secrets put."""
    import sqlalchemy as sa

    from govern.bootstrap import build_services
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.store.credential_secret_refs import CredentialSecretRefRepo
    from govern.config import load_settings
    from govern.domain.secret import Secret
    from govern.store.db import session_scope, upgrade
    from govern.store.tables import ExternalCredential
    from tests.factories import make_landscape

    home.mkdir(parents=True)
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": f"sqlite:///{home / 'govern.db'}",
           "GOVERN_LOG_LEVEL": log_level, "PYTHONPATH": server_pythonpath()}
    env.pop("GOVERN_REDIS_URL", None)
    services = build_services(load_settings({k: v for k, v in env.items() if k.startswith("GOVERN_")}))
    try:
        upgrade(services.engine)
        for step in services.init_steps:
            step(services)
        make_landscape(services, system="bench-erp", credential="bench-key", protocol="api_key_header",
                       named_credential="bench-api", url=f"{upstream_url}/api", user="bench-sync",
                       client_secret=USER_SECRET, methods=("GET",), paths=("/accounts/**",))
        with session_scope(services.sessions) as db:
            db.execute(sa.update(ExternalCredential).where(ExternalCredential.external_id == "bench-key")
                       .values(header_name="X-Api-Key"))
        CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock).replace(
            "bench-key", None, "api_key", Secret(API_KEY), expected_version=None)
    finally:
        services.close()
    return env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers for govern")
    ap.add_argument("--threads", type=int, default=0, help="threads per worker (default: govern.gunicorn_conf's)")
    ap.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=int, default=300, help="requests/s of the one-connection overhead runs")
    ap.add_argument("--rate-seconds", type=int, default=10)
    ap.add_argument("--log-level", default="INFO", help="GOVERN_LOG_LEVEL of govern (INFO logs a line per request)")
    ap.add_argument("--profile", type=Path, help="also run py-spy (raw collapsed stacks) on each worker during one "
                                                 "more proxied run, into this directory")
    ap.add_argument("--server", choices=SERVERS, default="gunicorn",
                    help="the WSGI server under govern (granian, waitress: importable, e.g. on PYTHONPATH)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more option for the server's command line (repeat), e.g. --server-arg=--keep-alive=5")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-proxy-"))
    nginx = gunicorn = None
    try:
        up_port, anchor_port = free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        nginx = start_nginx(tmp / "nginx", NGINX_SERVERS.format(up_port=up_port, anchor_port=anchor_port, key=API_KEY,
                                                          body=BODY))
        direct_url = f"{upstream_url}/api/accounts/001"
        anchor_url = f"http://127.0.0.1:{anchor_port}/api/accounts/001"
        wait_http(direct_url, what="nginx", proc=nginx)
        if requests.get(direct_url, timeout=5).status_code != 401:
            raise SystemExit("error: the upstream answered without the API key")
        env = prepare_instance(tmp / "instance", upstream_url, args.log_level)
        gunicorn, base = start_server(args.server, "govern.wsgi:app()", env, tmp / "govern.log", workers=args.workers,
                                       threads=args.threads or None, extra=args.server_arg)
        progress("nginx and govern up")
        proxied_url = f"{base}/api/v1/named-credentials/bench-api/proxy/accounts/001"
        resp = requests.post(f"{base}/oauth/token", auth=("bench-sync", USER_SECRET),
                             data={"grant_type": "client_credentials", "scope": "orders.read"}, timeout=30)
        if resp.status_code != 200:
            raise SystemExit(f"error: /oauth/token answered {resp.status_code}: {resp.text[:300]}")
        auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        for url, headers in ((direct_url, {"X-Api-Key": API_KEY}), (anchor_url, {}), (proxied_url, auth)):
            resp = requests.get(url, headers=headers, timeout=10)
            if resp.status_code != 200 or resp.json().get("id") != "001":
                raise SystemExit(f"error: {url} answered {resp.status_code}: {resp.text[:300]}")

        meter = CpuMeter(gunicorn.pid)
        progress("warming up")
        wrk(proxied_url, seconds=2, connections=args.connections, headers=auth, tmp=tmp)
        runs: dict[str, list[Load]] = {"healthz": [], "proxied": [], "direct": [], "nginx": []}
        for i in range(args.rounds):
            progress(f"round {i + 1} of {args.rounds}: /healthz, proxied, direct, nginx proxy")
            runs["healthz"].append(wrk(base + "/healthz", seconds=args.seconds, connections=args.connections,
                                       tmp=tmp, meter=meter))
            runs["proxied"].append(wrk(proxied_url, seconds=args.seconds, connections=args.connections,
                                       headers=auth, tmp=tmp, meter=meter))
            runs["direct"].append(wrk(direct_url, seconds=args.seconds, connections=args.connections,
                                      headers={"X-Api-Key": API_KEY}, tmp=tmp))
            runs["nginx"].append(wrk(anchor_url, seconds=args.seconds, connections=args.connections, tmp=tmp))
        if args.profile:
            progress(f"py-spy on the workers during {args.seconds} s of proxied load")
            spies = py_spy([p for p in meter.pids if p != gunicorn.pid], args.seconds + 1, args.profile)
            wrk(proxied_url, seconds=args.seconds, connections=args.connections, headers=auth, tmp=tmp)
            for spy in spies:
                spy.wait(60)
        progress(f"one connection at {args.rate} req/s: direct, proxied, nginx proxy")
        fixed = {
            "direct": hey_fixed_rate(direct_url, rate=args.rate, seconds=args.rate_seconds,
                                     headers={"X-Api-Key": API_KEY}),
            "proxied": hey_fixed_rate(proxied_url, rate=args.rate, seconds=args.rate_seconds, headers=auth,
                                      meter=meter),
            "nginx": hey_fixed_rate(anchor_url, rate=args.rate, seconds=args.rate_seconds),
        }
        failed = {name: sum(r.errors for r in rs) for name, rs in runs.items()}
        failed.update({f"fixed_{name}": r.errors for name, r in fixed.items()})
        if any(failed.values()):
            raise SystemExit(f"error: failed answers: {failed}")

        def mean(name: str) -> float:
            return sum(r.rps for r in runs[name]) / len(runs[name])

        cpu_call = sum(r.cpu_s for r in runs["proxied"]) * 1000 / sum(r.requests for r in runs["proxied"])
        cpu_healthz = sum(r.cpu_s for r in runs["healthz"]) * 1000 / sum(r.requests for r in runs["healthz"])
        print(f"uptime: {uptime()}")
        print(f"govern: {args.server} {' '.join(args.server_arg)} {args.workers} workers, threads={args.threads or 'conf'}, "
              f"GOVERN_LOG_LEVEL={args.log_level}; upstream and anchor: nginx, 1 worker; {os.cpu_count()} cores; "
              f"{args.connections} connections, {args.seconds} s x {args.rounds} rounds")
        for name, label in (("healthz", "govern GET /healthz"), ("proxied", "govern proxy      "),
                            ("direct", "upstream direct   "), ("nginx", "nginx proxy       ")):
            for r in runs[name]:
                print(f"{label}  {r.line()}{r.cpu_line()}")
        for name, r in fixed.items():
            print(f"1 connection at {args.rate}/s, {name:8s} {r.line()}{r.cpu_line()}")
        print(f"load average at the end: {load_average()}")
        over50 = fixed["proxied"].p50_ms - fixed["direct"].p50_ms
        over99 = fixed["proxied"].p99_ms - fixed["direct"].p99_ms
        print(f"server={args.server} proxy_over_healthz={mean('proxied') / mean('healthz'):.2f} "
              f"proxy_over_nginx={mean('proxied') / mean('nginx'):.2f} "
              f"govern_cpu_ms_per_call={cpu_call:.3f} govern_cpu_ms_per_healthz={cpu_healthz:.3f} "
              f"proxy_rps={mean('proxied'):.0f} healthz_rps={mean('healthz'):.0f} nginx_proxy_rps={mean('nginx'):.0f} "
              f"overhead_p50_ms={over50:.2f} overhead_p99_ms={over99:.2f} "
              f"nginx_overhead_p50_ms={fixed['nginx'].p50_ms - fixed['direct'].p50_ms:.2f} "
              f"nginx_overhead_p99_ms={fixed['nginx'].p99_ms - fixed['direct'].p99_ms:.2f}")
    finally:
        stop(gunicorn, group=True)
        stop(nginx, group=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
