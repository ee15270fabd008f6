"""`govern init` for production (issue #9): PostgreSQL and the vault store set up with the AppRole commands of
docs/operations.md, run as written with the `bao` CLI against OpenBao. init migrates an empty database, finds
the vault reachable, makes no local key file, and govern can then store secrets and seal cached tokens with
transit under the documented policy."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from govern.domain.secret import Secret
from tests.fixtures_openbao import bao_binary

pytestmark = [pytest.mark.vault, pytest.mark.postgres]
DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _documented_commands() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## First start in production"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line[3:] if line.startswith("   ") else line for line in block.splitlines() if line.strip()]


def _bao(script: str, server) -> str:
    env = {**os.environ, "BAO_ADDR": server.addr, "BAO_TOKEN": server.token,
           "PATH": f"{Path(bao_binary()).parent}:{os.environ['PATH']}", "HOME": str(server.workdir)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def test_documented_approle_setup_and_init(openbao_private, empty_postgres_url, tmp_path, monkeypatch, runner):
    lines = _documented_commands()
    assert lines[-2].startswith("bao read -field=role_id") and lines[-1].startswith("bao write -f -field=secret_id")
    _bao("\n".join(lines[:-2]), openbao_private)
    role_id = _bao(lines[-2].split("#")[0], openbao_private)
    secret_id = _bao(lines[-1].split("#")[0], openbao_private)
    assert role_id and secret_id and "\n" not in role_id + secret_id

    home = tmp_path / "prod-home"
    for name, value in {"GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": empty_postgres_url,
                        "GOVERN_SECRET_STORE": "vault", "GOVERN_VAULT_ADDR": openbao_private.addr,
                        "GOVERN_VAULT_ROLE_ID": role_id, "GOVERN_VAULT_SECRET_ID": secret_id,
                        "GOVERN_VAULT_MOUNT": "govern", "GOVERN_ADMIN_PASSWORD": "a long admin password 123"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOVERN_VAULT_TOKEN", raising=False)
    monkeypatch.delenv("GOVERN_MASTER_KEY", raising=False)

    result = runner.invoke(["init"])
    assert result.exit_code == 0, result.output
    assert "database: migrated to the latest schema" in result.output
    assert f"secret store: vault at {openbao_private.addr} (mount 'govern') reachable" in result.output
    assert "admin: created 'admin'" in result.output

    from govern.secrets.keys import key_file_path

    assert not key_file_path(home).exists(), "the local store's key file must not be made for the vault store"
    engine = sa.create_engine(empty_postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
                              if empty_postgres_url.startswith("postgresql://") else empty_postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() >= 1
            assert conn.execute(sa.text("SELECT count(*) FROM admin_user")).scalar_one() == 1
    finally:
        engine.dispose()

    # The documented policy is enough for what govern does with the vault: KV v2 versions, metadata, listing,
    # deletion, and sealing cached tokens with the transit key.
    from govern.bootstrap import build_services
    from govern.config import load_settings

    services = build_services(load_settings())
    try:
        store = services.secret_store
        first = store.put("credential/erp-cc/-/client_secret", Secret("v1-value"), cas=0)
        second = store.put("credential/erp-cc/-/client_secret", Secret("v2-value"), cas=first.version)
        assert store.get("credential/erp-cc/-/client_secret", version=first.version).reveal() == "v1-value"
        assert store.metadata("credential/erp-cc/-/client_secret").version == second.version
        assert "credential/erp-cc/-/client_secret" in store.list_paths()
        store.delete("credential/erp-cc/-/client_secret")
        assert store.transit.available()
        assert store.transit.decrypt(store.transit.encrypt(b"sealed token")) == b"sealed token"
    finally:
        services.close()
