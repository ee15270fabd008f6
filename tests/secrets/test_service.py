"""SecretService: validation of the target and field, check-and-set writes, metadata, nothing half-written."""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.domain.passwords import verify_password
from govern.domain.secret import MAX_SECRET_BYTES
from govern.errors import NotFound, SecretStoreUnavailable, ValidationFailed
from govern.secrets.errors import SecretRecordingFailed
from govern.secrets.service import SecretService, credential_fields
from govern.store.db import session_scope
from govern.store.tables import AdminAction, ExternalCredential, IntegrationUser, SecretRef, SecretVersion
from tests.factories import ACTOR, make_landscape
from tests.fakes.secret_store import MemorySecretStore


@pytest.fixture
def fake():
    return MemorySecretStore()


@pytest.fixture
def service(services, fake):
    make_landscape(services, client_secret=None)
    return SecretService(services.sessions, fake, services.clock)


def test_fields_follow_the_protocol():
    assert credential_fields("oauth2_client_credentials", "client_secret_basic") == ("client_secret",)
    assert credential_fields("oauth2_client_credentials", "private_key_jwt") == ("private_key",)
    assert "refresh_token" in credential_fields("oauth2_refresh_token", "client_secret_post")
    assert "private_key" in credential_fields("oauth2_jwt_bearer", None)
    assert credential_fields("basic", None) == ("password",)
    assert credential_fields("api_key_header", None) == ("api_key",)
    assert credential_fields("custom_header", None) == ("value",)


def test_put_records_metadata_and_versions(service, services, fake):
    first = service.put_for_credential("erp-cc", "client_secret", b"value-one\n", actor="tester")
    assert (first.ref, first.version, first.store) == ("credential/erp-cc/client_secret", 1, "memory")
    assert fake.get("credential/erp-cc/client_secret").reveal() == "value-one"  # the trailing newline is dropped
    second = service.put_for_credential("erp-cc", "client_secret", "value-two")
    assert second.version == 2 and second.describe().startswith("set on ")
    with services.sessions() as s:
        ref = s.exec(select(SecretRef)).one()
        stages = {v.version: v.stage for v in s.exec(select(SecretVersion)).all()}
        actions = s.exec(select(AdminAction).where(AdminAction.actor != ACTOR)).all()  # not the setup's apply
    assert ref.current_version == 2 and stages == {1: "previous", 2: "current"}
    assert [a.action for a in actions] == ["secret.put", "secret.put"]
    assert "value" not in repr([(a.before, a.after) for a in actions]).replace("'version'", "")


def test_principal_paths_and_per_principal_fields(services, fake):
    make_landscape(services, protocol="oauth2_refresh_token", client_secret=None)
    service = SecretService(services.sessions, fake)
    status = service.put_for_credential("erp-cc", "refresh_token", "rt", principal="default")
    assert status.ref == "credential/erp-cc/principal/default/refresh_token"
    with pytest.raises(ValidationFailed, match="principal"):
        service.put_for_credential("erp-cc", "refresh_token", "rt")


@pytest.mark.parametrize("call, error, text", [
    (lambda s: s.put_for_credential("nope", "client_secret", "v"), NotFound, "unknown credential 'nope'"),
    (lambda s: s.put_for_credential("erp-cc", "client_secret", "v", principal="ghost"), NotFound, "no principal 'ghost'"),
    (lambda s: s.put_for_credential("erp-cc", "password", "v"), ValidationFailed, "unknown field 'password'"),
    (lambda s: s.put_for_credential("erp-cc", "client_secret", "  \n"), ValidationFailed, "empty"),
    (lambda s: s.put_for_credential("erp-cc", "client_secret", "x" * (MAX_SECRET_BYTES + 1)), ValidationFailed, "64 KiB"),
    (lambda s: s.put_for_user("ghost", "client_secret", "v"), NotFound, "unknown integration user"),
    (lambda s: s.put_for_user("order-sync", "api_key", "v"), ValidationFailed, "unknown field"),
])
def test_bad_input_writes_nothing(service, fake, services, call, error, text):
    with pytest.raises(error, match=text):
        call(service)
    assert fake.data == {}
    with services.sessions() as s:
        assert s.exec(select(SecretRef)).all() == []


def test_store_down_records_nothing(service, fake, services):
    fake.down = True
    with pytest.raises(SecretStoreUnavailable):
        service.put_for_credential("erp-cc", "client_secret", "v")
    with services.sessions() as s:
        assert s.exec(select(SecretRef)).all() == []
        assert s.exec(select(AdminAction).where(AdminAction.actor != ACTOR)).all() == []


def test_recording_failure_is_reported_and_a_retry_converges(service, fake, services, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("database went away")

    monkeypatch.setattr(SecretService, "_record_versions", staticmethod(broken))
    with pytest.raises(SecretRecordingFailed, match="stored as version 1.*run the same put again"):
        service.put_for_credential("erp-cc", "client_secret", "v1")
    with services.sessions() as s:
        assert s.exec(select(SecretRef)).all() == []
    monkeypatch.undo()
    status = service.put_for_credential("erp-cc", "client_secret", "v2")
    assert status.version == 2
    with services.sessions() as s:
        assert {v.version: v.stage for v in s.exec(select(SecretVersion)).all()} == {1: "previous", 2: "current"}


def test_integration_user_client_secret_updates_the_hash(service, services, fake):
    status = service.put_for_user("order-sync", "client_secret", "new-client-secret-value")
    assert status.ref == "integration_user/order-sync/client_secret"
    with services.sessions() as s:
        user = s.exec(select(IntegrationUser)).one()
    assert verify_password("new-client-secret-value", user.client_secret_hash)
    with session_scope(services.sessions) as s:
        s.exec(select(IntegrationUser)).one().client_auth_method = "private_key_jwt"
    with pytest.raises(ValidationFailed, match="private_key_jwt"):
        service.put_for_user("order-sync", "client_secret", "x")


def test_reconcile_records_what_the_store_holds(service, fake, services):
    service.put_for_credential("erp-cc", "client_secret", "v1")
    fake.put("credential/erp-cc/client_secret", __import__("govern.domain.secret", fromlist=["Secret"]).Secret("v2"))
    assert service.reconcile("credential/erp-cc/client_secret").version == 2


def test_services_wire_the_local_store(services):
    assert services.secret_store.kind == "local"
    services.health_checks["secret_store"]()
    with services.sessions() as s:
        assert s.exec(select(ExternalCredential)).all() == []
