"""Soak under injected upstream faults (issue #16, `bench/soak.py`).

    python bench/soak.py [--minutes 10] [--rate-fraction 0.7]

Starts, on free ports, and stops at the end: the fault-injecting fake OAuth server (tests/fakes/oauth_server.py)
and a resource server (tests/fakes/resource_server.py), both in threads of this process; govern under gunicorn
(`-c python:govern.gunicorn_conf`, 2 workers) on a private PostgreSQL database, Redis, the local secret store.
Landscape (as bench/broker.py: tests.factories.make_landscape, secrets through CredentialSecrets):
- `soak-cc`: OAuth client credentials (upstream tokens live an hour: cache hits), base URL the resource server;
- `soak-rt`: OAuth refresh token with rotation, upstream tokens live 3 s (cached for 2.7 s: the 10% leeway), so
  govern refreshes about every 3 s and the fake rotates the refresh token each time.

1. capacity: 5 s of wrk, 16 connections, closed loop, on `POST .../soak-cc/token`;
2. soak: `--rate-fraction` x that rate in all, for `--minutes`, from two wrk processes (paced by wrk's `delay()`):
   half on the token endpoint (9 of 10 on soak-cc, 1 of 10 on soak-rt), half on `GET .../soak-cc/proxy/orders/1`.
   Faults during the soak: each second one resource-server fault in turn (503, 429 with Retry-After, a 2 s
   answer, 500); every 5 s one fault on the OAuth server's refresh_token grant in turn (503, 429, 1.5 s delay).
Non-2xx answers are classified by the JSON error code govern answered: explained (the injected upstream
status passed through, `upstream_*`, `circuit_open`: consequences of an injected fault) vs the rest.
Reports RSS (VmRSS) and open fds of the gunicorn processes at the soak's start and end, decision rows
(actions token and proxy) written during the soak vs answers wrk saw, and `govern log verify`.
Last line: `errors=N rss_growth_pct=X fds_growth=N records_missing=N chain=intact|broken`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._soakkit import GOVERN, ROOT, USER_SECRET, Instance, lua_script, parse_wrk, progress, run_wrk  # noqa: E402

# Error codes (or passed-through upstream statuses) that an injected upstream fault explains.
EXPLAINED_PREFIXES = ("upstream_", "circuit_open", "injected", "server_error", "rate_limited",
                      "degraded_credential_unavailable")


def classify(counts: dict[str, int]) -> tuple[int, int, dict[str, int]]:
    explained = other = 0
    rest: dict[str, int] = {}
    for key, n in counts.items():
        status, _, code = key.partition(":")
        if int(status) < 300:
            continue
        if code.startswith(EXPLAINED_PREFIXES):
            explained += n
        else:
            other += n
            rest[key] = rest.get(key, 0) + n
    return explained, other, rest


def decision_rows(instance: Instance) -> int:
    import sqlalchemy as sa

    with instance.services.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM decision WHERE action IN ('token', 'proxy')")).scalar_one()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate-fraction", type=float, default=0.7)
    ap.add_argument("--connections", type=int, default=8, help="connections of each soak wrk")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    from tests.factories import make_landscape
    from tests.fakes.oauth_server import FakeUpstream
    from tests.fakes.resource_server import ResourceServer

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-soak-"))
    oauth = FakeUpstream().start()
    resource = ResourceServer().start()
    instance = None
    stop = threading.Event()
    injected: dict[str, int] = {}
    try:
        instance = Instance(tmp)
        make_landscape(instance.services, system="soak-erp", credential="soak-cc", token_url=oauth.token_url,
                       client_id="cc-client", named_credential="soak-cc", url=resource.url + "/api",
                       user="soak-sync", client_secret=USER_SECRET, permission_set="ps-cc", ps_scopes=("orders.read",),
                       max_token_lifetime=3600)
        make_landscape(instance.services, system="soak-crm", credential="soak-rt",
                       protocol="oauth2_refresh_token", token_url=oauth.token_url, client_id="rt-client",
                       named_credential="soak-rt", url=oauth.url + "/api", user="soak-rt-sync",
                       client_secret=USER_SECRET, permission_set="ps-rt", ps_scopes=("orders.read",),
                       max_token_lifetime=3600)
        oauth.register_client("cc-client", secret="cc-upstream-secret", scope="orders.read")
        oauth.register_client("rt-client", secret="rt-upstream-secret", scope="orders.read")
        oauth.client_ttls["rt-client"] = 3  # served from the cache for 2.7 s (10% leeway): a refresh every ~3 s
        instance.put_secret("soak-cc", None, "client_secret", "cc-upstream-secret")
        instance.put_secret("soak-rt", None, "client_secret", "rt-upstream-secret")
        instance.put_secret("soak-rt", "default", "refresh_token", oauth.issue_refresh_token("rt-client"))
        instance.start(workers=2)
        progress(f"govern up at {instance.base}, pids {instance.pids()}")
        boot_rss, boot_fds, _ = instance.rss_kb_and_fds()
        tok_cc, ttl = instance.govern_token("soak-sync")
        tok_rt, _ = instance.govern_token("soak-rt-sync")
        if ttl and ttl < args.minutes * 60 + 60:
            print(f"warning: govern tokens live {ttl} s, less than the soak: expect 401s at the end", file=sys.stderr)
        hdr_cc = {"Authorization": f"Bearer {tok_cc}", "Content-Type": "application/json"}
        hdr_rt = {"Authorization": f"Bearer {tok_rt}", "Content-Type": "application/json"}
        body = '{"scope": "orders.read"}'
        token_cc = ("POST", "/api/v1/named-credentials/soak-cc/token", hdr_cc, body)
        token_rt = ("POST", "/api/v1/named-credentials/soak-rt/token", hdr_rt, body)
        proxy = ("GET", "/api/v1/named-credentials/soak-cc/proxy/orders/1", {"Authorization": f"Bearer {tok_cc}"}, None)

        # 1. capacity (closed loop), after a short warm-up
        cap_script = tmp / "capacity.lua"
        cap_script.write_text(lua_script([token_cc], 0))
        run_wrk(instance.base, cap_script, seconds=2, connections=16)
        cap = run_wrk(instance.base, cap_script, seconds=5, connections=16)
        capacity = cap["rps"]
        target = capacity * args.rate_fraction
        progress(f"capacity {capacity:.0f} req/s (token, cache hit, 16 connections); soak target {target:.0f} req/s")

        # 2. soak
        per_gen = target / 2
        pause_ms = max(1, int(args.connections / per_gen * 1000 * 0.85))  # 0.85: the answer's own time
        tok_script, proxy_script = tmp / "token.lua", tmp / "proxy.lua"
        tok_script.write_text(lua_script([token_cc] * 9 + [token_rt], pause_ms))
        proxy_script.write_text(lua_script([proxy], pause_ms))

        def inject() -> None:
            rs_faults = [("rs_503", lambda: resource.fail_next(1, 503)), ("rs_429", lambda: resource.rate_limit_next(1, "1")),
                         ("rs_slow_2s", lambda: resource.slow_next(1, 2.0)), ("rs_500", lambda: resource.fail_next(1, 500))]
            oauth_faults = [("oauth_503", dict(kind="5xx", status=503)), ("oauth_429", dict(kind="429", retry_after=1)),
                            ("oauth_delay_1.5s", dict(kind="delay", delay=1.5))]
            tick = 0
            while not stop.wait(1.0):
                name, push = rs_faults[tick % len(rs_faults)]
                push()
                injected[name] = injected.get(name, 0) + 1
                if tick % 5 == 0:
                    name, kw = oauth_faults[(tick // 5) % len(oauth_faults)]
                    oauth.inject(grant="refresh_token", times=1, **kw)
                    injected[name] = injected.get(name, 0) + 1
                tick += 1

        time.sleep(1)
        rss0, fds0, pids0 = instance.rss_kb_and_fds()
        rows0 = decision_rows(instance)
        load_start = os.getloadavg()
        seconds = args.minutes * 60
        progress(f"soak for {seconds:.0f} s: {per_gen:.0f} req/s token + {per_gen:.0f} req/s proxy, "
                 f"{args.connections} connections each, pause {pause_ms} ms; RSS {rss0 / 1024:.1f} MB, fds {fds0}")
        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
        outs = (tmp / "wrk_token.txt", tmp / "wrk_proxy.txt")
        gens = [run_wrk(instance.base, s, seconds=seconds, connections=args.connections, background=True, out=o)
                for s, o in zip((tok_script, proxy_script), outs, strict=True)]
        for g in gens:
            g.wait()
        stop.set()
        injector.join()
        time.sleep(3)  # let in-flight calls finish and their decisions land
        rss1, fds1, pids1 = instance.rss_kb_and_fds()
        rows1 = decision_rows(instance)
        load_end = os.getloadavg()
        results = [parse_wrk(o.read_text()) for o in outs]
        leftover_rs = len(resource._faults)
        leftover_oauth = sum(f.remaining or 0 for f in oauth.faults)

        verify = subprocess.run([GOVERN, "log", "verify"], cwd=str(ROOT), env=instance.env, capture_output=True, text=True)
        chain = "intact" if verify.returncode == 0 and "chain intact" in verify.stdout else "broken"

        answered = sum(r["answers"] for r in results)
        explained = other = 0
        rest: dict[str, int] = {}
        for name, r in zip(("token", "proxy"), results, strict=True):
            e, o, rs = classify(r["counts"])
            explained, other = explained + e, other + o
            for k, v in rs.items():
                rest[f"{name} {k}"] = v
            print(f"{name}: {r['answers']} answers, {r['rps']:.1f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                  f"socket errors: {r['socket_errors']}")
            print(f"  by status/code: {dict(sorted(r['counts'].items()))}")
        records = rows1 - rows0
        missing = max(0, answered - records)
        print(f"load average: start {' '.join(f'{x:.2f}' for x in load_start)}, end {' '.join(f'{x:.2f}' for x in load_end)}; "
              f"{os.cpu_count()} cores")
        print(f"capacity (token, cache hit, closed loop, 16 connections): {capacity:.0f} req/s; soak target "
              f"{target:.0f} req/s ({args.rate_fraction:g}), achieved {sum(r['rps'] for r in results):.0f} req/s")
        print(f"faults injected: {dict(sorted(injected.items()))}; not consumed at the end: resource {leftover_rs}, "
              f"oauth {leftover_oauth}; oauth grant calls {dict(oauth.counts)}")
        print(f"non-2xx answers: {explained} explained by injected faults, {other} not: {rest}")
        print(f"gunicorn processes {pids0} -> {pids1}; RSS after boot {boot_rss / 1024:.1f} MB, soak start "
              f"{rss0 / 1024:.1f} MB, end {rss1 / 1024:.1f} MB; fds after boot {boot_fds}, soak start {fds0}, end {fds1}")
        print(f"decision rows (token, proxy) written during the soak: {records}; answers seen by wrk: {answered}")
        print(f"govern log verify (exit {verify.returncode}): {(verify.stdout + verify.stderr).strip()[:400]}")
        growth = (rss1 - rss0) * 100 / rss0 if rss0 else 0.0
        print(f"errors={other} rss_growth_pct={growth:.1f} fds_growth={fds1 - fds0} records_missing={missing} chain={chain}")
    finally:
        stop.set()
        resource.release_slow()
        if instance is not None:
            instance.close()
        resource.stop()
        oauth.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
