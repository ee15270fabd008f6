"""Four worker processes on the same due secrets (real PostgreSQL): each secret is rotated exactly once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from govern.rotation import machine
from govern.rotation.rotators.postgres_role import role_accepts
from govern.store.db import session_scope
from govern.store.tables import RotationRun, SecretRef, SecretVersion
from tests.rotation.conftest import add_secret, build
from tests.rotation.pg_roles import admin_url, pg_roles  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_four_workers_rotate_each_secret_exactly_once(tmp_path, postgres_url, pg_roles, clock, notifier):  # noqa: F811
    from govern.config import load_settings

    settings = load_settings({}, home=tmp_path, database_url=postgres_url, log_level="WARNING")
    services = build(settings, clock, notifier, real_store=True)  # the LocalSecretStore on PostgreSQL
    store = services.secret_store
    # Due a minute ago in real time: the worker processes use the system clock.
    import datetime as dt

    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    names = [f"static-{i}" for i in range(40)]
    for name in names:
        add_secret(services, name, due_at=due)
    roles = [pg_roles(f"start-{i}") for i in range(3)]
    for i, role in enumerate(roles):
        add_secret(services, role, rotator="postgres_role", owner_kind="postgres_role", owner=role,
                   initial=f"start-{i}", due_at=due)

    go = tmp_path / "go"
    env = {**os.environ, "GOVERN_ROTATION_POSTGRES_URL": admin_url(), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.rotation.worker_proc", postgres_url, str(go),
                               str(tmp_path / f"out{i}.json")], cwd=ROOT, env=env) for i in range(4)]
    go.touch()
    for p in procs:
        assert p.wait(timeout=240) == 0

    reported = [o for i in range(4) for o in json.loads((tmp_path / f"out{i}.json").read_text())]
    finished = [o["secret"] for o in reported if o["status"] == "finished"]
    assert sorted(finished) == sorted(names + roles)  # every secret reported finished by exactly one worker
    assert not [o for o in reported if o["status"] in ("retrying", "parked", "failed")]
    with session_scope(services.sessions) as s:
        runs = list(s.execute(select(RotationRun)).scalars())
        refs = {r.id: r for r in s.execute(select(SecretRef)).scalars()}
        versions = list(s.execute(select(SecretVersion)).scalars())
    assert len(runs) == len(names) + len(roles)
    assert len({r.secret_ref_id for r in runs}) == len(runs)
    assert all(r.state == machine.FINISHED for r in runs)
    assert all(ref.current_version == 2 for ref in refs.values())
    assert len(versions) == 2 * len(refs)
    for ref in refs.values():
        assert store.metadata(ref.path).versions == (1, 2)  # one new version per secret, no duplicates
    for role in roles:
        assert role_accepts(admin_url(), role, store.get(f"rotation-test/{role}"))
    services.close()
