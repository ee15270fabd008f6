"""Benchmark `govern apply` at 100x today's volume (seed practice 5, plan for volume).

Generates a landscape of 1,000 systems, 1,000 credentials (with 3,000 principals), 2,000 named
credentials, 10,000 integration users (with 15,000 assignments) and 2,000 permission sets (with
4,000 grants); creates a fresh PostgreSQL database govern_bench_<random>, migrates it, applies the
landscape, applies it again unchanged, and drops the database.

Each apply runs in its own child process, so that its peak memory is its own: the figure is the
child's peak resident set size (resource.getrusage ru_maxrss), interpreter and imports included.
Seconds (wall clock) cover reading the file, validation, planning and the transaction (not interpreter
start-up); the CPU seconds of govern's own process are printed too, since wall time on a shared machine
includes waiting for the CPU and for PostgreSQL.

    /work/venv/bin/python bench/apply.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--keep-file F]

Last line: first_s=... first_mb=... reapply_s=...
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS, USERS, PERMISSION_SETS = 1_000, 10_000, 2_000
PROTOCOLS = ["oauth2_client_credentials", "oauth2_jwt_bearer", "basic", "api_key_header"]


def generate(seed: int = 7) -> str:
    rnd = random.Random(seed)
    out = ["apiVersion: govern/v1", "kind: Landscape", "systems:"]
    for i in range(SYSTEMS):
        out += [f"  - id: sys-{i:04d}", f"    name: System {i}", f"    kind: {rnd.choice(['erp', 'warehouse', 'crm', 'payments'])}",
                f"    scopes: [s{i}.read, s{i}.write, s{i}.admin, api, refresh_token]",
                "    contract:", f"      owner: team-{i % 50}@example.com", f"      escalation: oncall-{i % 50}@example.com",
                f"      rate_limit_per_minute: {rnd.randint(60, 6000)}", f"      daily_api_budget: {rnd.randint(10, 500) * 1000}",
                f"      maintenance_windows: [{{day: {rnd.choice(['sat', 'sun'])}, start: \"02:00\", end: \"04:00\"}}]",
                f"      runbook: https://runbooks.example.com/sys-{i:04d}"]
    out.append("credentials:")
    for i in range(SYSTEMS):
        protocol = PROTOCOLS[i % len(PROTOCOLS)]
        out += [f"  - id: cred-{i:04d}", f"    system: sys-{i:04d}", f"    protocol: {protocol}"]
        if protocol.startswith("oauth2"):
            out += [f"    token_url: https://sys-{i:04d}.example.com/oauth/token", f"    client_id: client-{i}",
                    f"    scopes: [s{i}.read, s{i}.write]"]
        if protocol == "api_key_header":
            out.append("    header: X-API-Key")
        out.append("    principals:")
        out += [f"      - {{name: p{k}, subject: svc-{i}-{k}@example.com}}" for k in range(3)]
        out.append("    rotation: {every: 90d, overlap: 24h}")
    out.append("named_credentials:")
    for i in range(SYSTEMS):
        for k, api in enumerate(("REST", "Bulk")):
            out += [f"  - id: nc-{i:04d}-{k}", f"    credential: cred-{i:04d}", f"    url: https://sys-{i:04d}.example.com/api",
                    "    api_version: v2", f"    api_type: {api}", "    timeout: 15s", "    retry: {attempts: 3, backoff: 200ms}",
                    "    methods: [GET, POST, PATCH]", "    paths: [\"/v2/objects/**\", \"/v2/query/**\"]"]
    out.append("permission_sets:")
    for j in range(PERMISSION_SETS):
        i = j % SYSTEMS
        out += [f"  - id: ps-{j:04d}", f"    description: Access to system {i}", f"    scopes: [s{i}.read, s{i}.write]",
                "    api_types: [REST, Bulk]", "    max_token_lifetime: 15m", "    grants:"]
        for k in range(2):
            out += [f"      - named_credential: nc-{i:04d}-{k}", f"        principal: p{(j + k) % 3}",
                    "        methods: [GET, POST]", f"        paths: [\"/v2/objects/Order{j}/**\"]"]
    out.append("integration_users:")
    for u in range(USERS):
        a, b = rnd.randrange(PERMISSION_SETS), rnd.randrange(PERMISSION_SETS)
        sa_, sb = a % SYSTEMS, b % SYSTEMS
        out += [f"  - id: user-{u:05d}", f"    name: Integration {u}", f"    owner: team-{u % 50}@example.com",
                f"    justification: Syncs data for flow {u}.", "    review_date: 2027-06-30",
                f"    source_system: sys-{rnd.randrange(SYSTEMS):04d}",
                f"    ip_ranges: [10.{u // 256 % 256}.{u % 256}.0/24]",
                f"    scopes: [s{sa_}.read, s{sb}.read]"]
        out.append(f"    permission_sets: [ps-{a:04d}" + (f", ps-{b:04d}]" if a != b and u % 2 else "]"))
    return "\n".join(out) + "\n"


def run_child(url: str, path: str) -> dict:
    """Apply once in this process and report seconds and peak RSS."""
    import resource

    sys.path.insert(0, str(ROOT))
    from govern.landscape import apply_document
    from govern.store.db import make_engine, make_session_factory

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    started, cpu = time.perf_counter(), time.process_time()
    text = Path(path).read_text()
    plan = apply_document(sessions, text, path)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    return {"seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "summary": plan.summary()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default=os.environ.get("GOVERN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--keep-file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(*args.child)))
        return

    sys.path.insert(0, str(ROOT))

    from govern.store.db import make_engine, upgrade

    from bench._pg import create_private_database

    url, drop_database = create_private_database(args.pg)
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        started = time.perf_counter()
        text = generate()
        path = args.keep_file or tempfile.mkstemp(prefix="govern-bench-", suffix=".yaml")[1]
        Path(path).write_text(text)
        print(f"generated {len(text) / 1e6:.1f} MB of YAML in {time.perf_counter() - started:.1f}s: {path}", flush=True)
        results = []
        for label in ("first apply", "re-apply (unchanged)"):
            child = subprocess.run([sys.executable, __file__, "--child", url, path], check=True, capture_output=True,
                                   text=True, cwd=ROOT)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"{label}: {result['seconds']} s wall, {result['cpu_s']} s CPU in govern's process, peak "
                  f"{result['peak_mb']} MB; {result['summary']}", flush=True)
        if not args.keep_file:
            os.unlink(path)
    finally:
        drop_database()
    first, again = results
    print(f"first_s={first['seconds']} first_mb={first['peak_mb']} reapply_s={again['seconds']}")


if __name__ == "__main__":
    main()
