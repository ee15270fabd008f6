"""The keyed, hash-chained decision log: every record is committed before `append` returns (group commit),
verify catches edits (even with the later hashes recomputed, as an attacker without the key would), gaps and a
deleted tail (against signed checkpoints), and writers in two processes on PostgreSQL keep one chain."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sqlalchemy as sa

from govern.broker.decision_log import ChainedDecisionLog, DecisionLogUnavailable
from govern.store.decision_records import ADVISORY_LOCK_KEY, DecisionRecordRepo, iter_records
from govern.domain.decision_chain import GENESIS, canonical_json, record_hash
from govern.store.db import make_engine
from govern.store.tables import Decision, DecisionCheckpoint
from tests.broker.conftest import FakeClock

T = Decision.__table__


def _log(services, **kw):
    return ChainedDecisionLog(DecisionRecordRepo(services.engine), FakeClock(), services.decision_keys, **kw)


def _fill(log, n, prefix="c"):
    for i in range(n):
        log.append(None, None, correlation_id=f"{prefix}-{i}", integration_user="u", named_credential="nc",
                   allowed=i % 2 == 0, rules=["permit:ps"] if i % 2 == 0 else ["deny:default"],
                   scopes_requested=["a"], source_ip="127.0.0.1", latency_ms=1.2345 + i)


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(T)).scalar_one()


def _attacker_rehash(engine, from_id: int) -> None:
    """What someone who can write the table but not read the key does after an edit: recompute every later
    hash with plain SHA-256 so that each prev_hash link holds again."""
    records = [r for r in iter_records(engine) if r["id"] >= from_id]
    with engine.begin() as conn:
        prev = conn.execute(sa.select(T.c.hash).where(T.c.id == from_id - 1)).scalar() or GENESIS
        for rec in records:
            h = hashlib.sha256(canonical_json(rec) + prev.encode()).hexdigest()
            conn.execute(sa.update(T).where(T.c.id == rec["id"]).values(prev_hash=prev, hash=h))
            prev = h


def test_records_are_keyed_and_chained_from_the_genesis(services):
    log = _log(services)
    _fill(log, 20)
    with services.sessions() as s:
        rows = s.execute(sa.select(Decision).order_by(Decision.id)).scalars().all()
    assert [r.id for r in rows] == list(range(1, 21))  # committed by the time append returned: no flush
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    assert {r.key_id for r in rows} == {services.decision_keys.active()[0]}
    assert [r.outcome for r in rows[:2]] == ["allow", "deny"]
    assert log.verify().intact
    log.close()


def test_appenders_share_commits_and_each_returns_after_its_own(services):
    log = _log(services)
    barrier = threading.Barrier(40)
    seen: list[int] = []

    def work(t):
        barrier.wait()
        for i in range(10):
            log.append(None, None, correlation_id=f"t{t}-{i}", allowed=True, rules=["permit:x"])
            # returned: the record is in the database now
            with services.engine.connect() as conn:
                seen.append(conn.execute(sa.select(sa.func.count()).select_from(T)
                                         .where(T.c.correlation_id == f"t{t}-{i}")).scalar_one())

    threads = [threading.Thread(target=work, args=(t,)) for t in range(40)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert seen == [1] * 400
    assert _count(services.engine) == 400
    assert log.commits < 400  # many requests shared one commit
    assert log.verify().intact
    log.close()


def test_a_failed_commit_fails_the_append(services):
    log = _log(services)
    _fill(log, 2)
    with services.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE decision RENAME TO decision_away"))
    try:
        with pytest.raises(DecisionLogUnavailable):
            log.append(None, None, correlation_id="lost", allowed=True, rules=["permit:x"])
    finally:
        with services.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE decision_away RENAME TO decision"))
    log.append(None, None, correlation_id="after", allowed=True, rules=["permit:x"])
    assert _count(services.engine) == 3
    log.close()


def test_an_appender_that_stops_waiting_gets_a_503_and_its_record_is_still_written(services):
    """Leader and followers: a follower whose batch is stuck behind a held database lock gives up after the commit
    timeout (503), is never asked to lead, and the log goes on: its record is written with the next batch."""
    log = _log(services, commit_timeout=0.5)
    _fill(log, 1)
    blocker = services.engine.connect()
    if blocker.dialect.name == "postgresql":  # the chain lock: the leader's batch waits for it
        blocker.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    else:
        blocker.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite: the database write lock is the chain lock
    leader = threading.Thread(target=log.append, kwargs=dict(correlation_id="leader", allowed=True, rules=["permit:x"]))
    try:
        leader.start()
        deadline = time.monotonic() + 30
        while log.backlog()[0] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(DecisionLogUnavailable):
            log.append(None, None, correlation_id="gave-up", allowed=True, rules=["permit:x"])
    finally:
        blocker.rollback()
        blocker.close()
    leader.join(30)
    assert not leader.is_alive()
    log.append(None, None, correlation_id="next", allowed=True, rules=["permit:x"])
    with services.engine.connect() as conn:
        written = sorted(conn.execute(sa.select(T.c.correlation_id)).scalars())
    assert written == ["c-0", "gave-up", "leader", "next"]
    assert log.backlog() == (0, 0.0)
    assert log.verify().intact
    log.close()


def test_verify_names_an_edited_record(services, runner):
    log = _log(services)
    _fill(log, 10)
    log.close()
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 0 and "chain intact: 10 records" in result.output, result.output
    with services.engine.begin() as conn:
        conn.execute(sa.update(T).where(T.c.id == 4).values(allowed=True, outcome="allow", rules=["permit:ps"]))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1
    assert "record 4: its contents do not match its MAC (edited)" in result.output
    assert "record 5" not in result.output  # the next link still holds: only the edit is named


def test_verify_catches_an_edit_whose_later_hashes_were_recomputed_without_the_key(services, runner):
    log = _log(services)
    _fill(log, 12)
    log.close()
    with services.engine.begin() as conn:
        conn.execute(sa.update(T).where(T.c.id == 5).values(allowed=True, outcome="allow", rules=["permit:ps"]))
    _attacker_rehash(services.engine, 5)
    with services.engine.connect() as conn:  # the attacker's chain links up again
        rows = conn.execute(sa.select(T.c.prev_hash, T.c.hash).order_by(T.c.id)).all()
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1, result.output
    assert "record 5: its contents do not match its MAC (edited)" in result.output
    assert "records 6..12: re-hashed after it" in result.output


def test_verify_names_a_deleted_tail_up_to_the_last_checkpoint(services, runner, tmp_path):
    log = _log(services, checkpoint_every=5)
    _fill(log, 12)  # checkpoints at the first batch and at 5 and 10
    log.close()
    anchor = tmp_path / "anchors.jsonl"
    result = runner.invoke(["log", "checkpoint", "-o", str(anchor)])  # signs record 12
    assert result.exit_code == 0 and json.loads(result.output)["head_id"] == 12
    assert runner.invoke(["log", "verify"]).exit_code == 0
    with services.engine.begin() as conn:
        conn.execute(sa.delete(T).where(T.c.id > 9))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1
    assert "records 10..12 are missing (deleted tail)" in result.output
    # The tail and every checkpoint in the database deleted: the exported checkpoint still tells.
    with services.engine.begin() as conn:
        conn.execute(sa.delete(DecisionCheckpoint.__table__))
    assert runner.invoke(["log", "verify"]).exit_code == 0  # nothing left in the database to tell
    result = runner.invoke(["log", "verify", "--anchor", str(anchor)])
    assert result.exit_code == 1 and "records 10..12 are missing (deleted tail)" in result.output


def test_verify_names_a_deleted_record_and_a_forged_checkpoint(services, runner):
    log = _log(services)
    _fill(log, 10)
    log.close()
    with services.engine.begin() as conn:
        conn.execute(sa.delete(T).where(T.c.id.in_((1, 6))))
        conn.execute(sa.update(DecisionCheckpoint.__table__).values(head_id=3))
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1
    assert "records 1..1 are missing (deleted) before record 2" in result.output
    assert "records 6..6 are missing (deleted) before record 7" in result.output
    assert "signature does not match (forged or edited)" in result.output


def test_unkeyed_records_from_before_the_upgrade_still_verify_and_a_downgrade_does_not(services, runner):
    import datetime as dt

    prev = GENESIS
    with services.engine.begin() as conn:
        for i in range(1, 4):  # as the previous version wrote them (plain SHA-256), then backfilled by the migration
            rec = {"id": i, "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "correlation_id": f"old-{i}",
                   "action": "token", "scopes_requested": [], "scopes_granted": [], "allowed": True,
                   "rules": ["permit:ps"], "upstream_status": 200}
            rec["hash"] = record_hash(rec, prev)
            conn.execute(sa.insert(T).values(**rec, prev_hash=prev, outcome="allow"))
            prev = rec["hash"]
    log = _log(services)
    _fill(log, 3)
    log.close()
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 0 and "chain intact: 6 records" in result.output, result.output
    # Strip the key from the newest records and re-hash them plainly: a downgrade, caught.
    with services.engine.begin() as conn:
        conn.execute(sa.update(T).where(T.c.id > 4).values(key_id=None))
    _attacker_rehash(services.engine, 5)
    result = runner.invoke(["log", "verify"])
    assert result.exit_code == 1 and "record 5: unkeyed after keyed records" in result.output


def test_the_key_rotates_and_old_records_keep_verifying(services, runner):
    log = _log(services)
    _fill(log, 3)
    old = services.decision_keys.active()[0]
    result = runner.invoke(["log", "rotate-key"])
    assert result.exit_code == 0
    new = result.output.strip().rsplit(" ", 1)[-1]
    assert new != old
    services.decision_keys.rotate()  # this process's writer signs with a new key now
    _fill(log, 3, prefix="d")
    log.close()
    with services.engine.connect() as conn:
        kids = conn.execute(sa.select(T.c.key_id).order_by(T.c.id)).scalars().all()
    assert kids[:3] == [old] * 3 and len(set(kids)) == 2
    assert runner.invoke(["log", "verify"]).exit_code == 0
    # The key is only in the secret store: the table holds its address.
    with services.engine.connect() as conn:
        paths = conn.execute(sa.text("SELECT secret_path FROM decision_log_key")).scalars().all()
    assert all(p.startswith("govern/decision-log-keys/") for p in paths)


def test_a_worker_pass_signs_the_head_only_when_it_moved(services):
    from govern.worker import jobs, run_pass

    checkpoint = [job for job in jobs(services, None) if job.name == "decision_checkpoint"]
    _fill(services.decision_log, 3)
    [signed] = run_pass(services, checkpoint)
    assert signed.status == "signed" and "record 3 under key" in signed.detail
    assert run_pass(services, checkpoint) == []  # nothing written since
    _fill(services.decision_log, 1)
    [signed] = run_pass(services, checkpoint)
    assert "record 4" in signed.detail
    assert services.decision_log.verify().checkpoints == 3  # the writer's first batch, and the two above


def test_export_writes_json_lines_and_resumes_from_a_cursor(services, runner, tmp_path):
    log = _log(services)
    _fill(log, 5)
    out, cursor = tmp_path / "siem.jsonl", tmp_path / "cursor"
    result = runner.invoke(["log", "export", "--cursor", str(cursor), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert cursor.read_text().strip() == "5"
    _fill(log, 3, prefix="more")
    log.close()
    assert runner.invoke(["log", "export", "--cursor", str(cursor), "-o", str(out)]).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == list(range(1, 9))
    assert {"outcome", "key_id", "hash", "prev_hash", "rules"} <= set(lines[0])
    assert cursor.read_text().strip() == "8"
    result = runner.invoke(["log", "export", "--after", "6"])
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [7, 8]


def test_process_exit_leaves_every_acknowledged_record(settings, tmp_path):
    script = textwrap.dedent(f"""
        from govern.config import load_settings
        from govern.bootstrap import build_services
        svc = build_services(load_settings({{}}, home={str(settings.home)!r}, database_url={settings.database_url!r}))
        for i in range(300):
            svc.decision_log.append(None, None, correlation_id=f"exit-{{i}}", allowed=True, rules=["permit:x"])
        # no close()
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=root, timeout=120)
    engine = make_engine(settings.database_url)
    assert _count(engine) == 300
    engine.dispose()


def _writer(url, home, tag, n, start):
    from govern.bootstrap import build_services
    from govern.config import load_settings

    svc = build_services(load_settings({}, home=home, database_url=url))
    start.wait(30)
    threads = [threading.Thread(target=lambda k=k: [svc.decision_log.append(
        None, None, correlation_id=f"{tag}-{k}-{i}", allowed=True, rules=["permit:x"]) for i in range(n // 8)])
        for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    svc.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_writing_concurrently_keep_one_chain_on_postgres(postgres_url, settings):
    from govern.bootstrap import build_services
    from govern.config import load_settings

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(postgres_url, str(settings.home), tag, 400, start))
             for tag in ("p1", "p2")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    svc = build_services(load_settings({}, home=settings.home, database_url=postgres_url))
    try:
        report = svc.decision_log.verify()
        assert report.intact and report.records == 800, report
        with svc.engine.connect() as conn:
            tags = conn.execute(sa.select(T.c.correlation_id)).scalars().all()
        assert sum(t.startswith("p1-") for t in tags) == 400 and sum(t.startswith("p2-") for t in tags) == 400
    finally:
        svc.close()


def test_canonical_json_is_sorted_compact_utf8_with_utc_microseconds():
    import datetime as dt

    at = dt.datetime(2026, 1, 2, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    raw = canonical_json({"id": 3, "at": at, "scopes_requested": ("b", "a"), "rules": ["permit:ps"],
                          "integration_user": "ü"})
    doc = json.loads(raw)
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert doc["at"] == "2026-01-02T03:05:06.000007Z" and doc["scopes_requested"] == ["b", "a"]
