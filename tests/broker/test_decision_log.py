"""The hash-chained decision log: verify catches edits and deletions, shutdown flushes everything,
and concurrent writers in two processes on PostgreSQL keep one intact chain."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from govern.broker.decision_log import ChainedDecisionLog, verify_log
from govern.domain.decision_chain import GENESIS
from govern.store.db import make_engine
from govern.store.tables import Decision
from tests.broker.conftest import FakeClock


def _fill(log, n, prefix="c"):
    for i in range(n):
        log.append(None, None, correlation_id=f"{prefix}-{i}", integration_user="u", named_credential="nc",
                   allowed=i % 2 == 0, rules=["permit:ps"] if i % 2 == 0 else ["deny:default"],
                   scopes_requested=["a"], source_ip="127.0.0.1", latency_ms=1.2345 + i)


def test_records_are_chained_from_the_genesis(services):
    log = ChainedDecisionLog(services.engine, FakeClock(), batch_size=7)
    _fill(log, 20)
    assert log.flush()
    with services.sessions() as s:
        rows = s.execute(sa.select(Decision).order_by(Decision.id)).scalars().all()
    assert [r.id for r in rows] == list(range(1, 21))
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    assert verify_log(services.engine).intact
    log.close()


def test_verify_catches_an_edited_record(services, runner):
    log = ChainedDecisionLog(services.engine, FakeClock())
    _fill(log, 10)
    log.close()
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 0 and "chain intact: 10 records" in result.output
    with services.engine.begin() as conn:
        conn.execute(sa.update(Decision.__table__).where(Decision.__table__.c.id == 4).values(allowed=True,
                                                                                               rules=["permit:ps"]))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1
    assert "record 4" in result.output and "edited" in result.output


def test_verify_catches_a_deleted_record(services, runner):
    log = ChainedDecisionLog(services.engine, FakeClock())
    _fill(log, 10)
    log.close()
    with services.engine.begin() as conn:
        conn.execute(sa.delete(Decision.__table__).where(Decision.__table__.c.id == 6))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1
    assert "record 7" in result.output and "deleted" in result.output


def test_verify_catches_a_deleted_first_record_and_a_rehashed_edit(services):
    log = ChainedDecisionLog(services.engine, FakeClock())
    _fill(log, 5)
    log.close()
    # An editor who also recomputes the edited record's own hash still breaks the next link.
    from govern.domain.decision_chain import record_hash
    from govern.broker.decision_log import iter_records

    rec = next(r for r in iter_records(services.engine) if r["id"] == 2)
    rec["allowed"] = not rec["allowed"]
    with services.engine.begin() as conn:
        conn.execute(sa.update(Decision.__table__).where(Decision.__table__.c.id == 2)
                     .values(allowed=rec["allowed"], hash=record_hash(rec, rec["prev_hash"])))
    report = verify_log(services.engine)
    assert not report.intact and report.broken_at == 3
    with services.engine.begin() as conn:
        conn.execute(sa.delete(Decision.__table__).where(Decision.__table__.c.id == 1))
    report = verify_log(services.engine)
    assert not report.intact and report.broken_at == 2 and "genesis" in report.problem


def test_clean_shutdown_flushes_every_record(settings):
    from govern.bootstrap import build_services

    svc = build_services(settings)
    _fill(svc.decision_log, 2500)  # more than several batches, still queued when close() starts
    svc.close()
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Decision.__table__)).scalar_one() == 2500
    assert verify_log(engine).intact
    engine.dispose()


def test_process_exit_flushes_through_atexit(settings, tmp_path):
    script = textwrap.dedent(f"""
        from govern.config import load_settings
        from govern.bootstrap import build_services
        svc = build_services(load_settings({{}}, home={str(tmp_path / 'x')!r}, database_url={settings.database_url!r}))
        for i in range(300):
            svc.decision_log.append(None, None, correlation_id=f"exit-{{i}}", allowed=True, rules=["permit:x"])
        # no close(): the interpreter exits and atexit must flush
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=root, timeout=120)
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Decision.__table__)).scalar_one() == 300
    engine.dispose()


def _writer(url, tag, n, start):
    from govern.broker.decision_log import ChainedDecisionLog
    from govern.ports import SystemClock
    from govern.store.db import make_engine

    engine = make_engine(url)
    log = ChainedDecisionLog(engine, SystemClock(), batch_size=13, linger_seconds=0.001)
    start.wait(30)
    for i in range(n):
        log.append(None, None, correlation_id=f"{tag}-{i}", allowed=True, rules=["permit:x"])
    log.close()
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_writing_concurrently_keep_one_chain_on_postgres(postgres_url):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(postgres_url, tag, 400, start)) for tag in ("p1", "p2")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    engine = make_engine(postgres_url)
    try:
        report = verify_log(engine)
        assert report.intact and report.records == 800, report
        with engine.connect() as conn:
            tags = conn.execute(sa.select(Decision.__table__.c.correlation_id)).scalars().all()
        assert sum(t.startswith("p1-") for t in tags) == 400 and sum(t.startswith("p2-") for t in tags) == 400
    finally:
        engine.dispose()


def test_canonical_json_is_sorted_compact_utf8_with_utc_microseconds():
    import datetime as dt
    import json

    from govern.domain.decision_chain import canonical_json

    at = dt.datetime(2026, 1, 2, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    raw = canonical_json({"id": 3, "at": at, "scopes_requested": ("b", "a"), "rules": ["permit:ps"],
                          "integration_user": "ü"})
    doc = json.loads(raw)
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert doc["at"] == "2026-01-02T03:05:06.000007Z" and doc["scopes_requested"] == ["b", "a"]
