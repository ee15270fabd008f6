"""Deleting a stored secret (`govern secrets delete`, DELETE …/secrets/{field}): every version goes from the
store (the local store erases the key material), the reference, versions and rotation history go from the
database, an integration user's client secret stops authenticating, and the deletion is an admin action."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import select

from govern.errors import Conflict, SecretNotFound
from govern.secrets.service import SecretService
from govern.store.db import session_scope
from govern.store.tables import (AdminAction, IntegrationUser, LocalSecret, RotationRun, SecretRef,
                                 SecretVersion)
from tests.factories import make_landscape

REF = "credential/erp-cc/client_secret"


@pytest.fixture
def landscape(services):
    return make_landscape(services, client_secret=None)


@pytest.fixture
def auditor_token(services):
    from govern.store.admins import create_admin, issue_token

    create_admin(services.sessions, "read-only", "correct horse battery staple", "auditor")
    return issue_token(services.sessions, "read-only")


def _put(runner, args, value):
    result = runner.invoke(["secrets", "put", *args], input=value)
    assert result.exit_code == 0, result.output


def test_cli_delete_erases_every_version_and_the_reference(runner, landscape, services):
    _put(runner, ["erp-cc", "--field", "client_secret"], "first-value-1")
    _put(runner, ["erp-cc", "--field", "client_secret"], "second-value-2")
    result = runner.invoke(["secrets", "delete", REF, "--yes"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{REF}: deleted (version 2, 0 rotation run(s) removed)"
    with pytest.raises(SecretNotFound):
        services.secret_store.get(REF)
    with services.sessions() as s:
        assert s.exec(select(SecretRef).where(SecretRef.external_id == REF)).first() is None
        assert s.exec(select(SecretVersion)).all() == []
        rows = s.exec(select(LocalSecret).where(LocalSecret.path == REF)).all()
        # Shredded: nothing left to decrypt, even with the master key; the rows only keep the version count.
        assert len(rows) == 2 and all(r.deleted and r.ciphertext == b"" and r.wrapped_key == b"" for r in rows)
        action = s.exec(select(AdminAction).where(AdminAction.action == "secret.delete")).one()
        assert action.subject == REF and action.before["version"] == 2 and action.actor.startswith("cli:")
    assert "erp-cc" not in runner.invoke(["secrets", "status"]).output
    _put(runner, ["erp-cc", "--field", "client_secret"], "third-value-3")
    assert services.secret_store.get(REF).reveal() == "third-value-3"
    assert services.secret_store.metadata(REF).version == 3  # never mistaken for an erased version
    assert runner.invoke(["secrets", "rotate-key"]).exit_code == 0  # erased rows are not re-wrapped


def test_cli_delete_needs_confirmation_and_reports_each_item(runner, landscape):
    _put(runner, ["erp-cc", "--field", "client_secret"], "value-1")
    refused = runner.invoke(["secrets", "delete", REF])
    assert refused.exit_code == 2
    assert refused.output.strip() == "error: deleting secrets cannot be undone; pass --yes to confirm"
    result = runner.invoke(["secrets", "delete", "credential/nope/client_secret", REF, "--yes"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["credential/nope/client_secret: failed: no secret reference "
                                          "'credential/nope/client_secret'",
                                          f"{REF}: deleted (version 1, 0 rotation run(s) removed)"]


def test_deleting_a_user_client_secret_stops_it_authenticating(landscape, services):
    service = SecretService(services.sessions, services.secret_store, services.clock)
    service.put_for_user("order-sync", "client_secret", "user-secret-value")
    with services.sessions() as s:
        assert s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one().client_secret_hash
    service.delete("integration_user/order-sync/client_secret", actor="tester")
    with services.sessions() as s:
        user = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one()
        assert user.client_secret_hash is None and user.previous_client_secret_hash is None


def test_delete_is_refused_while_a_rotation_runs_and_removes_finished_history(landscape, services):
    service = SecretService(services.sessions, services.secret_store, services.clock)
    service.put_for_credential("erp-cc", "client_secret", "value-1")
    with session_scope(services.sessions) as s:
        ref_id = s.exec(select(SecretRef.id).where(SecretRef.external_id == REF)).one()
        s.add(RotationRun(secret_ref_id=ref_id, rotator="upstream_client_secret", state="finished"))
        s.add(RotationRun(secret_ref_id=ref_id, rotator="upstream_client_secret", state="pending"))
    with pytest.raises(Conflict):
        service.delete(REF)
    assert services.secret_store.get(REF).reveal() == "value-1"  # nothing deleted
    with session_scope(services.sessions) as s:
        s.execute(sa.update(RotationRun).where(RotationRun.state == "pending").values(state="cancelled"))
    assert service.delete(REF)["rotation_runs"] == 2
    with services.sessions() as s:
        assert s.exec(select(RotationRun)).all() == []


def test_api_delete_is_admin_only(client, landscape, services, admin_token, auditor_token):
    service = SecretService(services.sessions, services.secret_store, services.clock)
    service.put_for_credential("erp-cc", "client_secret", "value-1")
    url = "/api/v1/credentials/erp-cc/secrets/client_secret"
    assert client.delete(url, headers={"Authorization": f"Bearer {auditor_token}"}).status_code == 403
    r = client.delete(url, headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200 and r.get_json() == {"ref": REF, "deleted": True, "version": 1, "store": "local",
                                                     "rotation_runs": 0}
    again = client.delete(url, headers={"Authorization": f"Bearer {admin_token}"})
    assert again.status_code == 404 and again.content_type == "application/problem+json"


@pytest.mark.vault
def test_delete_against_openbao_removes_every_version(openbao, services, landscape):
    import hvac

    from govern.secrets.vault import VaultSecretStore
    from govern.secrets.vault_auth import TokenAuth

    mount = "secret"
    store = VaultSecretStore(hvac.Client(url=openbao.addr, timeout=5), TokenAuth(openbao.token), mount=mount)
    service = SecretService(services.sessions, store, services.clock)
    owner = "erp-cc"
    service.put_for_credential(owner, "client_secret", f"vault-value-{uuid.uuid4().hex}")
    service.put_for_credential(owner, "client_secret", "vault-value-2")
    client = hvac.Client(url=openbao.addr, token=openbao.token)
    assert client.secrets.kv.v2.read_secret_metadata(path=REF, mount_point=mount)["data"]["current_version"] == 2
    service.delete(REF, actor="tester")
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path=REF, mount_point=mount)
    with pytest.raises(SecretNotFound):
        store.get(REF)
