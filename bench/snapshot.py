"""Benchmark the one landscape snapshot (issue #15): what checking the stored landscape version costs, what a
rebuild costs, and what requests see while one runs, on SQLite and PostgreSQL, with the 100x landscape of
bench/apply.py applied (10,000 users, 2,000 permission sets, 2,000 named credentials).

For each backend: a fresh database (a temporary SQLite file; a private PostgreSQL database govern_bench_<random>,
dropped at the end), migrated, the landscape applied with `govern.landscape.apply_document`, then
- `check`: one version check as LandscapeCache does it (a pooled session, one primary-key read), N times;
- `hit`: LandscapeCache.current() inside the check interval (no database), N times;
- `rebuild`: what the cache's refresh does (govern.broker.landscape.load: the typed records of
  govern.store.landscape_snapshot, then the views, proxy Targets and upstream entries), 5 times, wall and CPU;
- `during`: the version moved as another process would move it, then one request a millisecond until the new
  snapshot is served: how many were answered from the previous one, and the slowest.
Medians and 99th percentiles of one run; the load average is printed, since the machine is shared.

    python bench/snapshot.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--checks 5000]

2026-12-06, load average 8.9 to 9.3 on 2 cores (bench/README.md, "One snapshot"): rebuild median 667 ms on
SQLite and 822 ms on PostgreSQL, 213 and 212 ms of CPU (the previous reader: 5,459 and 5,282 ms in the same
sitting); requests during a rebuild kept the previous snapshot, the slowest took 15.8 ms.

Last line: check_us_sqlite=... check_us_postgres=... hit_us=... rebuild_ms_sqlite=... rebuild_ms_postgres=...
rebuild_cpu_ms_sqlite=... rebuild_cpu_ms_postgres=... during_rebuild_max_us_sqlite=... during_rebuild_max_us_postgres=...
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._pg import create_private_database  # noqa: E402
from bench.apply import generate  # noqa: E402


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def measure(url: str, text: str, checks: int) -> dict[str, float]:
    from govern.broker.landscape import LandscapeCache, load
    from govern.landscape import apply_document
    from govern.ports import SystemClock
    from govern.store import landscape_version
    from govern.store.db import make_engine, make_session_factory, upgrade
    from govern.store.landscape_snapshot import LandscapeSnapshots

    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_session_factory(engine)
        started = time.perf_counter()
        apply_document(sessions, text, "bench.yaml")
        print(f"  applied in {time.perf_counter() - started:.1f} s")
        check = []
        for _ in range(checks):
            t = time.perf_counter()
            with sessions() as s:
                landscape_version.read_version(s.connection())
            check.append((time.perf_counter() - t) * 1e6)
        cache = LandscapeCache(sessions, SystemClock(), check_interval=3600, bound=3600)
        store = LandscapeSnapshots(sessions)
        rebuild, rebuild_cpu = [], []
        for _ in range(5):
            t, c = time.perf_counter(), time.process_time()
            _version, built = load(store, None)  # what LandscapeCache's refresh does
            assert built is not None and not built.broken and not built.broken_users
            snap = built
            rebuild.append((time.perf_counter() - t) * 1e3)
            rebuild_cpu.append((time.process_time() - c) * 1e3)
        cache.current()
        hit = []
        for _ in range(checks):
            t = time.perf_counter()
            cache.current()
            hit.append((time.perf_counter() - t) * 1e6)
        during = _requests_during_a_rebuild(engine, sessions)
        print(f"  snapshot: {len(snap.users)} users, {len(snap.permission_sets)} permission sets, "
              f"{len(snap.proxy_targets)} proxy targets, {len(snap.upstream)} upstream entries")
        (cm, c99), (hm, h99) = _quantiles(check), _quantiles(hit)
        print(f"  version check: median {cm:.0f} us, p99 {c99:.0f} us ({checks} reads)")
        print(f"  snapshot hit (no read): median {hm:.2f} us, p99 {h99:.2f} us")
        print(f"  rebuild: median {statistics.median(rebuild):.0f} ms (min {min(rebuild):.0f}, max {max(rebuild):.0f}); "
              f"CPU median {statistics.median(rebuild_cpu):.0f} ms")
        print(f"  requests while another process's change is rebuilt in the background: {during['calls']} calls, "
              f"{during['old']} answered from the previous snapshot, slowest {during['max_us']:.0f} us; "
              f"the new snapshot after {during['seen_ms']:.0f} ms")
        return {"check_us": cm, "hit_us": hm, "rebuild_ms": statistics.median(rebuild),
                "rebuild_cpu_ms": statistics.median(rebuild_cpu), "during_max_us": during["max_us"]}
    finally:
        engine.dispose()


def _requests_during_a_rebuild(engine, sessions) -> dict[str, float]:
    """A change committed as another process would (the version row moved outside this process's sessions),
    then requests (`current()`, one thread) until the new snapshot is served: how slow the slowest one was."""

    from govern.broker.landscape import CHECK_INTERVAL, LandscapeCache
    from govern.ports import SystemClock
    from govern.store import landscape_version

    cache = LandscapeCache(sessions, SystemClock())
    old = cache.current()
    with engine.begin() as conn:
        conn.execute(landscape_version._BUMP)
    time.sleep(CHECK_INTERVAL)
    latencies, stale, started = [], 0, time.perf_counter()
    while True:
        t = time.perf_counter()
        snap = cache.current()
        latencies.append((time.perf_counter() - t) * 1e6)
        if snap is not old:
            break
        stale += 1
        time.sleep(0.001)  # a request a millisecond, as a busy worker thread might see them
    return {"calls": len(latencies), "old": stale, "max_us": max(latencies),
            "seen_ms": (time.perf_counter() - started) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--checks", type=int, default=5000)
    args = parser.parse_args()
    text = generate()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (cores: {os.cpu_count()})")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite (file, WAL):")
        results["sqlite"] = measure(f"sqlite:///{tmp}/bench.db", text, args.checks)
    pg_url, drop = create_private_database(args.pg)
    try:
        print("PostgreSQL (local, TCP):")
        results["postgres"] = measure(pg_url, text, args.checks)
    finally:
        drop()
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print(f"check_us_sqlite={results['sqlite']['check_us']:.0f} check_us_postgres={results['postgres']['check_us']:.0f} "
          f"hit_us={results['sqlite']['hit_us']:.2f} rebuild_ms_sqlite={results['sqlite']['rebuild_ms']:.0f} "
          f"rebuild_ms_postgres={results['postgres']['rebuild_ms']:.0f} "
          f"rebuild_cpu_ms_sqlite={results['sqlite']['rebuild_cpu_ms']:.0f} "
          f"rebuild_cpu_ms_postgres={results['postgres']['rebuild_cpu_ms']:.0f} "
          f"during_rebuild_max_us_sqlite={results['sqlite']['during_max_us']:.0f} "
          f"during_rebuild_max_us_postgres={results['postgres']['during_max_us']:.0f}")


if __name__ == "__main__":
    main()
