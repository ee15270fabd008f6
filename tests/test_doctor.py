"""Issue #17, "where am I": `govern doctor` on a healthy instance and on four broken ones, and commands run
where no instance is. Every run is a real `govern` subprocess with only the GOVERN_* variables a user sets."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "govern" / "policy" / "policies"


def _govern(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "govern", *args], cwd=cwd, env=base, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def _lines(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """check name -> its line (`ok  name  detail` or `FAIL  name  detail`), and the fix lines under `name+fix`."""
    out, last = {}, None
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("ok", "FAIL"):
            name = next(n for n in ("instance", "database", "secret store", "redis", "policies", "public URL")
                        if rest.strip().startswith(n))
            out[name], last = line, name
        elif line.strip().startswith("fix: ") and last:
            out[last + "+fix"] = line.strip()
    return out


@pytest.fixture
def instance(tmp_path) -> Path:
    """A healthy instance made by `govern init` in tmp_path/instance (the default GOVERN_HOME from tmp_path)."""
    proc = _govern(["init"], tmp_path, GOVERN_ADMIN_PASSWORD="a-long-enough-password")
    assert proc.returncode == 0, proc.stderr
    return tmp_path


def test_doctor_on_a_healthy_instance_says_ok_for_each_part(instance):
    proc = _govern(["doctor"], instance)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _lines(proc)
    home = (instance / "instance").resolve()
    assert lines["instance"].startswith("ok") and str(home) in lines["instance"]
    assert lines["database"].startswith("ok") and f"{home}/govern.db" in lines["database"]
    assert "schema at the migration head" in lines["database"]
    assert lines["secret store"].startswith("ok") and f"{home}/master.keys" in lines["secret store"]
    assert lines["redis"].startswith("ok") and "not configured" in lines["redis"]
    assert lines["policies"].startswith("ok") and "8 policies valid" in lines["policies"]
    assert lines["public URL"].startswith("ok") and "http://127.0.0.1:8000" in lines["public URL"]
    assert proc.stdout.rstrip().endswith("all checks passed")
    assert proc.stderr == ""


def test_wrong_folder_doctor_names_the_path_and_nothing_is_created(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _govern(["doctor"], elsewhere)
    assert proc.returncode == 1
    lines = _lines(proc)
    home = (elsewhere / "instance").resolve()
    assert lines["instance"].startswith("FAIL") and f"{home} does not exist" in lines["instance"]
    assert "govern init" in lines["instance+fix"]
    assert lines["database"].startswith("FAIL") and "the file does not exist" in lines["database"]
    assert "2 problem(s)" in proc.stdout or "problem(s): instance, database" in proc.stdout
    # and an ordinary command says where it looked, in one line, exit 2
    for args in (["export"], ["rotate", "history"], ["db", "current"], ["secrets", "status"]):
        run = _govern(args, elsewhere)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stderr.strip() == (
            f"error: no govern instance in {home}: its database {home}/govern.db does not exist; run `govern init` "
            "to create one there, or run from your instance's folder (or set GOVERN_HOME)"), args
    assert list(elsewhere.iterdir()) == []  # no instance/govern.db, no key file, nothing


def test_database_behind_its_migrations(instance):
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from govern.store.db import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{instance / 'instance' / 'govern.db'}")
    script = ScriptDirectory.from_config(alembic_config(engine))
    head = script.get_revision(sorted(script.get_heads())[0])
    older = head.down_revision if isinstance(head.down_revision, str) else sorted(head.down_revision)[0]
    with engine.begin() as conn:  # as if the code had been upgraded and `govern db upgrade` not run
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :old WHERE version_num = :head"),
                     {"old": older, "head": head.revision})
    engine.dispose()
    proc = _govern(["doctor"], instance)
    assert proc.returncode == 1
    lines = _lines(proc)
    assert lines["database"].startswith("FAIL") and f"schema at {older}" in lines["database"]
    assert "behind" in lines["database"] and lines["database+fix"] == "fix: run `govern db upgrade`"
    assert proc.stdout.rstrip().endswith("1 problem(s): database")
    run = _govern(["export"], instance)
    assert run.returncode == 2 and str((instance / "instance").resolve()) in run.stderr
    assert "is missing or out of date" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_vault_unreachable(instance):
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _govern(["doctor"], instance, GOVERN_SECRET_STORE="vault",
                   GOVERN_VAULT_ADDR=f"http://127.0.0.1:{port}", GOVERN_VAULT_TOKEN="canary-vault-token-7f3a")
    assert proc.returncode == 1
    lines = _lines(proc)
    assert lines["secret store"].startswith("FAIL") and f"vault at http://127.0.0.1:{port}" in lines["secret store"]
    assert "unreachable" in lines["secret store"] and "GOVERN_VAULT_ADDR" in lines["secret store+fix"]
    assert proc.stdout.rstrip().endswith("1 problem(s): secret store")
    assert "canary-vault-token-7f3a" not in proc.stdout + proc.stderr


def test_invalid_policies(instance, tmp_path):
    broken = tmp_path / "policies"
    shutil.copytree(POLICIES, broken)
    (broken / "050_broken.cedar").write_text('@id("broken")\nforbid (principal, action, resource) when { nope };\n')
    proc = _govern(["doctor"], instance, GOVERN_POLICIES_DIR=str(broken))
    assert proc.returncode == 1
    lines = _lines(proc)
    assert lines["policies"].startswith("FAIL") and str(broken.resolve()) in lines["policies"]
    assert "050_broken.cedar" in lines["policies"] and "govern policies validate" in lines["policies+fix"]
    assert proc.stdout.rstrip().endswith("1 problem(s): policies")
