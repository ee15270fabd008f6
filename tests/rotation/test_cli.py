"""`govern rotate` and `govern worker` end to end through the CLI (in-process)."""
from __future__ import annotations

import json

import pytest
from sqlmodel import select

from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, RotationRun, SecretRef, SecretVersion, System
from tests.rotation.conftest import add_secret


@pytest.fixture
def store(monkeypatch, rsvc, clock, notifier):
    """The CLI builds its own Services; give it the same fake store, clock and notifier as the test."""
    import govern.cli.context as context
    from govern.bootstrap import build_services

    shared = rsvc.secret_store

    def build(settings, **kw):
        svc = build_services(settings, clock=clock)
        svc.secret_store = shared
        svc.notifier = notifier
        return svc

    monkeypatch.setattr(context, "build_services", build)
    return shared


def _counts(services):
    with session_scope(services.sessions) as s:
        runs = len(s.execute(select(RotationRun)).all())
        versions = len(s.execute(select(SecretVersion)).all())
        due = [r.next_due_at for r in s.execute(select(SecretRef).order_by(SecretRef.id)).scalars()]
    return runs, versions, due


def test_dry_run_writes_nothing(runner, rsvc, store):
    add_secret(rsvc, "a")
    add_secret(rsvc, "b")
    before = (_counts(rsvc), {p: dict(v) for p, v in store.data.items()})
    result = runner.invoke(["rotate", "--due"])
    assert result.exit_code == 0, result.output
    assert "dry run: 2 item(s)" in result.output
    assert "would_rotate           a" in result.output and "rotator static" in result.output
    assert (_counts(rsvc), {p: dict(v) for p, v in store.data.items()}) == before
    result = runner.invoke(["rotate", "a"])
    assert result.exit_code == 0 and "would_rotate" in result.output
    assert (_counts(rsvc), {p: dict(v) for p, v in store.data.items()}) == before


def test_commit_rotates_and_reports_each_item(runner, rsvc, store):
    add_secret(rsvc, "a")
    add_secret(rsvc, "needs-hook", rotator="store_key", owner_kind="govern", initial=None)  # the fake store cannot
    result = runner.invoke(["rotate", "--due", "--commit"])
    assert result.exit_code == 1, result.output  # one item failed
    lines = result.output.splitlines()
    assert any(line.startswith("finished") and " a " in line for line in lines)
    assert any(line.startswith("retrying") and "needs-hook" in line and "rotation_not_supported" in line for line in lines)
    assert store.metadata("rotation-test/a").version == 2
    hist = runner.invoke(["rotate", "history", "a", "--json"])
    (run,) = json.loads(hist.output)
    assert run["state"] == "finished" and [s["step"] for s in run["steps"]] == ["create_pending", "set", "test", "finish"]
    text = runner.invoke(["rotate", "history"])
    assert "needs-hook" in text.output and "rotation_not_supported" in text.output


def test_rotate_by_name_forces_a_rotation_even_when_not_due(runner, rsvc, store):
    add_secret(rsvc, "a", due_at=None)
    result = runner.invoke(["rotate", "a", "--commit"])
    assert result.exit_code == 0, result.output
    assert store.metadata("rotation-test/a").version == 2


def test_usage_errors_are_one_line_exit_2(runner, rsvc, store):
    result = runner.invoke(["rotate"])
    assert result.exit_code == 2 and "error: give either a secret NAME or --due" in result.output
    result = runner.invoke(["rotate", "no-such-secret"])
    assert result.exit_code == 2 and "error: no secret named no-such-secret" in result.output


def test_manual_confirm_through_the_cli(runner, rsvc, store, notifier):
    with session_scope(rsvc.sessions) as s:
        system = System(external_id="crm-sys")
        s.add(system)
        s.flush()
        s.add(ExternalCredential(external_id="crm", system_id=system.id, protocol="oauth2_client_credentials",
                                 token_url=None, client_id="c", rotation={"set": "manual"}))
    add_secret(rsvc, "credential/crm/client_secret", rotator="upstream_client_secret", owner_kind="credential",
               owner="crm", initial="old")
    result = runner.invoke(["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "awaiting_confirmation" in result.output
    run_id = int(result.output.split("run=")[1].split()[0])
    assert notifier.names() == ["rotation.reminder"]
    # No token_url to test against: the confirmed secret fails its test and is reported.
    result = runner.invoke(["rotate", "confirm", str(run_id)])
    assert result.exit_code == 1 and "no token_url" in result.output
    result = runner.invoke(["rotate", "confirm", str(run_id)])
    assert result.exit_code == 2 and "not awaiting confirmation" in result.output


def test_worker_once_runs_due_work(runner, rsvc, store):
    add_secret(rsvc, "a")
    result = runner.invoke(["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "finished" in result.output
    assert store.metadata("rotation-test/a").version == 2


def test_worker_stops_cleanly_on_sigterm(settings):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "GOVERN_HOME": str(settings.home), "GOVERN_DATABASE_URL": settings.database_url,
           "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "govern", "worker", "--interval", "1h"], cwd=root, env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # blocks until the worker is in its loop (pytest-timeout guards it)
        assert "started" in line, line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "worker stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_new_secret_never_reaches_console_logs_or_database(runner, rsvc, store, notifier, caplog):
    import logging

    from govern.domain.client_auth import hash_client_secret
    from govern.store.tables import IntegrationUser

    caplog.set_level(logging.DEBUG)
    with session_scope(rsvc.sessions) as s:
        s.add(IntegrationUser(external_id="erp", client_secret_hash=hash_client_secret("canary-old-secret")))
    add_secret(rsvc, "iu/erp", rotator="client_secret", owner_kind="integration_user", owner="erp",
               initial="canary-old-secret")
    result = runner.invoke(["rotate", "iu/erp", "--commit"])
    assert result.exit_code == 0, result.output
    new = store.get("rotation-test/iu/erp").reveal()
    history = runner.invoke(["rotate", "history", "--json"]).output
    import sqlalchemy as sa

    with rsvc.engine.connect() as conn:
        dump = " ".join(str(row) for table in ("rotation_run", "secret_ref", "secret_version", "integration_user")
                        for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
    for canary in (new, "canary-old-secret"):
        assert canary not in result.output and canary not in history
        assert canary not in caplog.text and canary not in repr(notifier.events)
        assert canary not in dump
