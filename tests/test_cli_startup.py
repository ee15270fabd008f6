"""Issue #17, fast start: `govern --help` and every `govern <command> --help` load none of the heavy
libraries (the CLI imports them inside the commands). A test of structure, not of time: bench/cli.py times it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "flask", "werkzeug", "authlib", "joserfc", "cryptography", "hvac",
         "pydantic", "redis", "yaml", "cedarpy", "requests", "prometheus_client")

PROBE = """
import json, sys
import click
from govern.cli import _register, cli, main

def paths(command, prefix):
    yield prefix
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from paths(sub, [*prefix, name])

helped = []
_register()
for path in [[]] + list(paths(cli, []))[1:]:
    try:
        main([*path, "--help"])
    except SystemExit as exc:
        assert exc.code == 0, (path, exc.code)
    helped.append(" ".join(path))
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"helped": helped, "loaded": loaded}))
"""


def test_help_of_govern_and_of_every_command_loads_no_heavy_library():
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"", "apply", "secrets status", "audit suppressions", "log verify", "rotate history", "dlq list",
            "doctor"} <= set(result["helped"])
    assert result["loaded"] == []


def test_the_completion_script_loads_no_heavy_library():
    probe = ("import os, sys\nos.environ['_GOVERN_COMPLETE'] = 'bash_source'\nfrom govern.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1].split(','))))")
    proc = subprocess.run([sys.executable, "-c", probe, ",".join(HEAVY)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_schema_check_without_alembic_agrees_with_alembic(database_url, tmp_path):
    """The CLI reads the stamped revision and the scripts' heads itself (start-up time); Alembic must agree,
    on a migrated database and on one with no schema yet."""
    from govern.store.db import (current_revisions, head_revisions, make_engine, script_heads, stamped_revisions)

    engine = make_engine(database_url)
    try:
        assert script_heads() == head_revisions(engine)
        assert stamped_revisions(engine) == current_revisions(engine) == head_revisions(engine)
    finally:
        engine.dispose()
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert stamped_revisions(empty) == current_revisions(empty) == set()
    finally:
        empty.dispose()


def test_a_script_whose_revisions_are_not_literals_defers_to_alembic(tmp_path, monkeypatch):
    from govern.store.db import migrations_dir, script_heads

    versions = tmp_path / "versions"
    versions.mkdir()
    for script in (migrations_dir() / "versions").glob("*.py"):
        (versions / script.name).write_text(script.read_text())
    (tmp_path / "env.py").write_text("")
    monkeypatch.setenv("GOVERN_MIGRATIONS_DIR", str(tmp_path))
    assert script_heads() is not None
    (versions / "zz_computed.py").write_text('revision = "zz" + "1"\ndown_revision = "flight_0001"\n')
    assert script_heads() is None


STATUS_PROBE = """
import json, sys
from govern.cli import main

try:
    main(["secrets", "status", "--json"])
except SystemExit as exc:
    assert not exc.code, exc.code
print()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlmodel", "pydantic") or m in sys.argv[1:])))
"""


def test_secrets_status_reads_the_store_without_sqlmodel_or_the_table_classes(tmp_path, cli_instance_template):
    """Issue #17: `govern secrets status` reads `secret_ref` with SQLAlchemy Core through a connection. Building
    the store-only services (the session factory with its landscape-version hook, the database cache) imports
    neither SQLModel (nor pydantic with it) nor govern's table classes: each is loaded when first used."""
    from tests.cli_instance import copy_instance, govern

    folder = copy_instance(cli_instance_template, tmp_path)
    put = govern(["secrets", "put", "--user", "sandbox-app", "--field", "client_secret"], folder,
                 input="status-probe-" + "x" * 24)
    assert put.returncode == 0, put.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERN_", "_GOVERN_", "COMP_"))}
    heavy = ["govern.store.tables", "govern.store.broker_tables", "govern.store.proxy_tables",
             "govern.store.rotation_tables", "govern.store.upstream_tables", "govern.store.schema"]
    proc = subprocess.run([sys.executable, "-c", STATUS_PROBE, *heavy], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    *document, _, loaded = proc.stdout.strip().splitlines()
    rows = json.loads("\n".join(document))
    assert [(r["ref"], r["store"], r["version"]) for r in rows] == [
        ("integration_user/sandbox-app/client_secret", "local", 1)]
    assert json.loads(loaded) == []
