"""SQLite: the decision log's writers in several processes take turns through a file lock beside the database
(govern.store.decision_records._WriterTurns), instead of sleeping in SQLite's busy handler. Another process is a
real one here: it holds the lock, and the writer waits for it, then writes; held past the timeout, the batch
fails as a locked database does (and the appender answers 503, tests/ops/test_decision_log_store_down.py)."""
from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from govern.store.db import make_engine, sqlite_path
from govern.store.decision_records import DecisionRecordRepo

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()  # until the test says so (or dies: the kernel drops the lock)
"""


def _record(i: int) -> dict:
    return {"at": dt.datetime(2026, 12, 6, 12, 0, i, tzinfo=dt.UTC), "correlation_id": f"c{i}",
            "integration_user": "u", "action": "token", "named_credential": "erp-api", "principal": None,
            "method": None, "path": None, "resource_object": None, "api_type": None, "scopes_requested": [],
            "scopes_granted": [], "source_ip": "127.0.0.1", "allowed": True, "rules": ["allow"],
            "upstream_status": None, "latency_ms": 1.0, "outcome": "allow", "error_code": None}


@pytest.fixture
def repo(database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("the file lock is SQLite's; PostgreSQL writers take turns with pg_advisory_xact_lock")
    engine = make_engine(database_url)
    repo = DecisionRecordRepo(engine)
    yield repo, f"{sqlite_path(database_url)}-decision.lock", engine
    repo.close()
    engine.dispose()


def _count(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM decision")).scalar_one())


def _holder(lock_path: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, lock_path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_writer_waits_for_the_other_process_turn_then_writes(repo):
    repo_, lock_path, engine = repo
    now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    holder = _holder(lock_path)
    done = threading.Event()

    def write():
        repo_.append_chained([_record(1), _record(2)], "k1", None, checkpoint=lambda a, b: False, now=now)
        done.set()

    writer = threading.Thread(target=write)
    try:
        writer.start()
        assert not done.wait(0.5)  # the other process has the turn: nothing is written meanwhile
        assert _count(engine) == 0
        holder.stdin.write("go\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        writer.join(60)
        assert done.is_set() and _count(engine) == 2
    finally:
        holder.kill()
        holder.wait()


def test_a_turn_held_past_the_timeout_fails_the_batch_as_a_locked_database(repo, monkeypatch):
    repo_, lock_path, engine = repo
    monkeypatch.setattr(repo_._turns, "_timeout", 0.2)
    holder = _holder(lock_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            repo_.append_chained([_record(1)], "k1", None, checkpoint=lambda a, b: False,
                                 now=lambda: dt.datetime.now(dt.UTC))
        assert _count(engine) == 0
    finally:
        holder.kill()
        holder.wait()
    # The holder died without unlocking: the kernel dropped its lock, and the next batch is written.
    repo_.append_chained([_record(3)], "k1", None, checkpoint=lambda a, b: False, now=lambda: dt.datetime.now(dt.UTC))
    assert _count(engine) == 1
