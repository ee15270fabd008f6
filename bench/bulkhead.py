"""Bulkhead: does one slow system hurt token issuance and calls to other systems? (issue #16, `bench/bulkhead.py`)

    python bench/bulkhead.py [--limit N] [--seconds 10]

Starts, on free ports, and stops at the end: the fake OAuth server (tests/fakes/oauth_server.py) and two resource
servers (tests/fakes/resource_server.py), in threads of this process; govern under gunicorn (`-c
python:govern.gunicorn_conf`: 2 workers, its default threads) on a private PostgreSQL database, Redis and the
local secret store. Two systems, each with an OAuth client-credentials named credential (upstream tokens live an
hour, so token requests are cache hits): `bh-slow` (its resource server answers every call after 5 s) and
`bh-fast`.

The probe: two hey processes at once for `--seconds`, 4 connections each, paced at 20 requests/s per
connection: `POST /api/v1/named-credentials/bh-fast/token` and `GET .../bh-fast/proxy/orders/1`.
1. probe unloaded;
2. `hey -c 100` on `GET .../bh-slow/proxy/orders/1` in the background (closed loop: a refused call is sent
   again at once); after 6 s (the first 5 s calls in flight), the same probe again; then the slow load stops.
p50s are hey's. The slow system's answers are counted by status (hey) and the decision log's error codes
(how many got 503 `upstream_concurrency_limit`).
`--limit N` sets GOVERN_PROXY_MAX_CONCURRENT_CALLS (default: govern's, 32 per process); `--threads N` sets
GOVERN_WEB_THREADS (default: govern's, 16 per worker).
`--server NAME` runs govern under another WSGI server (bench/_common.py `SERVERS`, issue #20).
Last line: `token_p50_ratio=X other_system_p50_ratio=Y` (loaded p50 / unloaded p50; goal: within 2x).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._soakkit import USER_SECRET, Instance, progress  # noqa: E402


def hey(url: str, headers: dict, *, seconds: float, connections: int, qps: float = 0, method: str = "GET",
        body: str | None = None, timeout_s: int = 30) -> subprocess.Popen:
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(connections), "-t", str(timeout_s), "-m", method]
    if qps:
        cmd += ["-q", f"{qps:g}"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:
        cmd += ["-T", "application/json", "-d", body]
    return subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse_hey(text: str) -> dict:
    p50 = re.search(r"50%+ in ([\d.]+) secs", text)
    p99 = re.search(r"99%+ in ([\d.]+) secs", text)
    statuses = {int(a): int(b) for a, b in re.findall(r"\[(\d+)\]\s+(\d+) responses", text)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.findall(r"^\s+\[(\d+)\]\s+(.*)$", text.split("Error distribution:")[1], re.M) \
        if "Error distribution:" in text else []
    return {"p50_ms": float(p50.group(1)) * 1000 if p50 else float("nan"),
            "p99_ms": float(p99.group(1)) * 1000 if p99 else float("nan"),
            "statuses": statuses, "rps": float(rps.group(1)) if rps else 0.0, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="GOVERN_PROXY_MAX_CONCURRENT_CALLS (default: govern's)")
    ap.add_argument("--threads", type=int, default=0, help="GOVERN_WEB_THREADS per worker (default: govern's, 64)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each probe")
    ap.add_argument("--server", default="gunicorn", help="the WSGI server under govern (bench/_common.py SERVERS)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))

    import sqlalchemy as sa

    from tests.factories import make_landscape
    from tests.fakes.oauth_server import FakeUpstream
    from tests.fakes.resource_server import ResourceServer

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-bulkhead-"))
    oauth = FakeUpstream().start()
    slow_rs, fast_rs = ResourceServer().start(), ResourceServer().start()
    instance = None
    slow_load = None
    try:
        extra = {"GOVERN_PROXY_MAX_CONCURRENT_CALLS": str(args.limit)} if args.limit else {}
        if args.threads:
            extra["GOVERN_WEB_THREADS"] = str(args.threads)
        instance = Instance(tmp, env_extra=extra)
        for tag, rs in (("slow", slow_rs), ("fast", fast_rs)):
            make_landscape(instance.services, system=f"{tag}-erp", credential=f"bh-{tag}-cc",
                           token_url=oauth.token_url, client_id=f"{tag}-client", named_credential=f"bh-{tag}",
                           url=rs.url + "/api", user=f"{tag}-sync", client_secret=USER_SECRET,
                           permission_set=f"ps-{tag}", ps_scopes=("orders.read",), max_token_lifetime=3600)
            oauth.register_client(f"{tag}-client", secret=f"{tag}-upstream-secret", scope="orders.read")
            instance.put_secret(f"bh-{tag}-cc", None, "client_secret", f"{tag}-upstream-secret")
        slow_rs.slow_next(1_000_000, delay=5.0)
        instance.start(workers=2, server=args.server)
        progress(f"govern up at {instance.base}")
        tok_fast, _ = instance.govern_token("fast-sync")
        tok_slow, _ = instance.govern_token("slow-sync")
        base = instance.base + "/api/v1/named-credentials"
        fast_auth = {"Authorization": f"Bearer {tok_fast}"}
        token_url, fast_url = f"{base}/bh-fast/token", f"{base}/bh-fast/proxy/orders/1"
        slow_url = f"{base}/bh-slow/proxy/orders/1"

        def probe() -> tuple[dict, dict]:
            a = hey(token_url, fast_auth, seconds=args.seconds, connections=4, qps=20, method="POST",
                    body='{"scope": "orders.read"}')
            b = hey(fast_url, fast_auth, seconds=args.seconds, connections=4, qps=20)
            return parse_hey(a.communicate()[0]), parse_hey(b.communicate()[0])

        probe_warm = hey(fast_url, fast_auth, seconds=3, connections=4, qps=20)
        probe_warm.communicate()
        load0 = os.getloadavg()
        tok0, fast0 = probe()
        progress(f"unloaded: token p50 {tok0['p50_ms']:.2f} ms, fast proxy p50 {fast0['p50_ms']:.2f} ms")
        slow_load = hey(slow_url, {"Authorization": f"Bearer {tok_slow}"}, seconds=args.seconds + 12,
                        connections=100, timeout_s=30)
        time.sleep(6)
        load1 = os.getloadavg()
        tok1, fast1 = probe()
        progress(f"loaded: token p50 {tok1['p50_ms']:.2f} ms, fast proxy p50 {fast1['p50_ms']:.2f} ms")
        slow = parse_hey(slow_load.communicate()[0])
        slow_load = None
        slow_rs.release_slow()
        time.sleep(2)
        with instance.services.engine.connect() as conn:
            codes = dict(conn.execute(sa.text(
                "SELECT coalesce(error_code, outcome), count(*) FROM decision WHERE named_credential = 'bh-slow' "
                "AND action = 'proxy' GROUP BY 1")).all())
        limit = args.limit or int(os.environ.get("GOVERN_PROXY_MAX_CONCURRENT_CALLS", "32"))
        from govern import gunicorn_conf  # the threads govern runs with when --threads is not given

        print(f"govern: {args.server}, 2 workers x {args.threads or gunicorn_conf.threads} threads; per-system limit {limit} per process; "
              f"{os.cpu_count()} cores; load average unloaded probe {' '.join(f'{x:.2f}' for x in load0)}, "
              f"loaded probe {' '.join(f'{x:.2f}' for x in load1)}")
        for name, r0, r1 in (("token (cache hit)", tok0, tok1), ("other system proxy", fast0, fast1)):
            print(f"{name}: unloaded p50 {r0['p50_ms']:.2f} ms p99 {r0['p99_ms']:.2f} ms {r0['rps']:.0f} req/s "
                  f"{r0['statuses']}; during slow load p50 {r1['p50_ms']:.2f} ms p99 {r1['p99_ms']:.2f} ms "
                  f"{r1['rps']:.0f} req/s {r1['statuses']} {r1['errors'][:3]}")
        print(f"slow system (hey -c 100, {args.seconds + 12:g} s): answers by status {slow['statuses']}, "
              f"client errors {slow['errors'][:3]}; decision log by error code: {codes}")
        print(f"slow system calls refused with upstream_concurrency_limit: {codes.get('upstream_concurrency_limit', 0)}")
        print(f"token_p50_ratio={tok1['p50_ms'] / tok0['p50_ms']:.2f} "
              f"other_system_p50_ratio={fast1['p50_ms'] / fast0['p50_ms']:.2f}")
    finally:
        if slow_load is not None:
            slow_load.kill()
        slow_rs.release_slow()
        if instance is not None:
            instance.close()
        slow_rs.stop()
        fast_rs.stop()
        oauth.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
