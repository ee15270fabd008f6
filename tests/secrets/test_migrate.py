"""`govern secrets migrate --to vault` against a real OpenBao: verify then delete, per-item report, resume."""
from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from govern.errors import SecretStoreUnavailable
from govern.secrets.vault import VaultSecretStore
from govern.store.tables import LocalSecret, SecretRef
from tests.factories import make_landscape

pytestmark = pytest.mark.vault


@pytest.fixture
def vault_env(openbao, monkeypatch):
    # A mount of its own, so the session-wide server's other tests cannot interfere.
    mount = "kv-" + uuid.uuid4().hex[:8]
    openbao.client().sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    monkeypatch.setenv("GOVERN_VAULT_ADDR", openbao.addr)
    monkeypatch.setenv("GOVERN_VAULT_TOKEN", openbao.token)
    monkeypatch.setenv("GOVERN_VAULT_MOUNT", mount)
    return mount


def _put_three(runner, services):
    make_landscape(services, client_secret=None)
    make_landscape(services, system="crm", credential="crm-basic", protocol="basic", named_credential="crm-api",
                   user="crm-sync", permission_set="crm-ps", client_secret=None)
    for args, value in ((["erp-cc", "--field", "client_secret"], "erp-one"),
                        (["erp-cc", "--field", "client_secret"], "erp-two"),
                        (["crm-basic", "--field", "password"], "crm-pw"),
                        (["--user", "order-sync", "--field", "client_secret"], "user-cs")):
        assert runner.invoke(["secrets", "put", *args], input=value).exit_code == 0


def test_migrate_resumes_after_a_failure(runner, services, openbao, vault_env, monkeypatch):
    _put_three(runner, services)
    real_put = VaultSecretStore.put
    calls = {"n": 0}

    def flaky_put(self, path, value, *, cas=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SecretStoreUnavailable("injected: the vault went away")
        return real_put(self, path, value, cas=cas)

    monkeypatch.setattr(VaultSecretStore, "put", flaky_put)
    r = runner.invoke(["secrets", "migrate", "--to", "vault"])
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert sum(line.startswith("moved") for line in lines) == 2
    assert sum(line.startswith("failed") for line in lines) == 1
    assert "2 moved or verified, 1 failed" in r.output
    with services.sessions() as s:
        live = {row.path for row in s.exec(select(LocalSecret).where(LocalSecret.deleted == False)).all()}  # noqa: E712
    assert len(live) == 1  # the failed one is still local, the others are gone locally

    # A crash between the vault write and the local delete: the next run must not write it again.
    failed_path = next(iter(live))
    vault = VaultSecretStore.from_settings(services.settings.with_overrides(
        vault_addr=openbao.addr, vault_token=openbao.token, vault_mount=vault_env))
    real_put(vault, failed_path, services.secret_store.get(failed_path), cas=0)

    monkeypatch.setattr(VaultSecretStore, "put", real_put)
    r = runner.invoke(["secrets", "migrate", "--to", "vault"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith(f"verified  {failed_path}")
    assert "1 moved or verified, 0 failed" in r.output
    assert vault.get("credential/erp-cc/client_secret").reveal() == "erp-two"
    assert vault.get("credential/crm-basic/password").reveal() == "crm-pw"
    assert vault.metadata(failed_path).version == 1  # not written twice
    with services.sessions() as s:
        assert s.exec(select(LocalSecret).where(LocalSecret.deleted == False)).all() == []  # noqa: E712
        refs = s.exec(select(SecretRef)).all()
    assert {(r.store, r.mount) for r in refs} == {("vault", vault_env)}
    r = runner.invoke(["secrets", "migrate", "--to", "vault"])
    assert r.exit_code == 0 and "0 moved or verified, 0 failed" in r.output


def test_migrate_needs_a_vault_address(runner, services):
    r = runner.invoke(["secrets", "migrate", "--to", "vault"])
    assert r.exit_code == 2 and r.output.startswith("error: set GOVERN_VAULT_ADDR")
