"""EXPLAIN (ANALYZE, BUFFERS) of the audit's SQL over `decision` at the bench size (PostgreSQL).

Seeds a private database like bench/audit.py (1,000 users, 1,000,000 decisions over 29 days), captures the
statements `load_model` runs against `decision`, and prints each one's plan and time. The database is
dropped at the end. Last line: `queries=… load_s=… slowest_ms=…`.

    /work/venv/bin/python bench/audit_explain.py [--decisions 1000000] [--history-months 12]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

# bench/ itself must not be on the path: bench/secrets.py would shadow the standard library's `secrets`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bench.audit import BASE, seed  # noqa: E402
from govern.store.audit_loader import load_model  # noqa: E402
from bench._pg import create_private_database  # noqa: E402
from govern.store.db import make_engine, make_session_factory, upgrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--history-months", type=int, default=1,
                    help="spread the decisions over this many 30-day months (1: all inside the usage window)")
    args = ap.parse_args()
    url, drop_database = create_private_database(BASE)
    try:
        engine = make_engine(url)
        upgrade(engine)
        now = dt.datetime.now(dt.UTC)
        seed(url, args.users, args.decisions, now)
        if args.history_months > 1:
            # a longer history: move each record back by 0..N-1 months, so only 1/N lies in the window
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE decision SET at = at - make_interval(days => 30 * (id % :n)::int)"),
                             {"n": args.history_months})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE decision"))
        captured: list[tuple[str, object]] = []

        @sa.event.listens_for(engine, "before_cursor_execute")
        def capture(conn, cursor, statement, parameters, context, executemany):
            if "FROM decision" in statement:
                captured.append((statement, parameters))

        sessions = make_session_factory(engine)
        t0 = time.perf_counter()
        with sessions() as s:
            load_model(s, now)
        load_s = time.perf_counter() - t0
        sa.event.remove(engine, "before_cursor_execute", capture)
        slowest = 0.0
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cur:
                cur.execute("SET work_mem = '256MB'")  # as load_model sets it (SET LOCAL)
                for statement, params in captured:
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
                    plan = [r[0] for r in cur.fetchall()]
                    ms = float(plan[-1].split(":")[1].split()[0])
                    slowest = max(slowest, ms)
                    print("=" * 100)
                    print(" ".join(statement.split())[:400])
                    print("\n".join(plan))
        engine.dispose()
        print(f"history_months={args.history_months} queries={len(captured)} load_s={load_s:.2f} "
              f"slowest_ms={slowest:.0f}")
    finally:
        drop_database()


if __name__ == "__main__":
    main()
