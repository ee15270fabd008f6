"""Degraded mode against a real OpenBao: the server stops mid-test (clean 503, nothing half-written), then recovers."""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.store.tables import AdminAction, SecretRef, SecretVersion
from tests.factories import make_landscape

pytestmark = pytest.mark.vault


@pytest.fixture
def vault_app(settings, openbao_private):
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.store.admins import create_admin, issue_token

    svc = build_services(settings.with_overrides(secret_store="vault", vault_addr=openbao_private.addr,
                                                 vault_token=openbao_private.token))
    make_landscape(svc, client_secret=None)
    create_admin(svc.sessions, "root-admin", "correct horse battery staple", "admin")
    token = issue_token(svc.sessions, "root-admin")
    yield create_app({"TESTING": True}, services=svc), svc, {"Authorization": f"Bearer {token}"}
    svc.close()


def _rows(svc):
    with svc.sessions() as s:
        return (len(s.exec(select(SecretRef)).all()), len(s.exec(select(SecretVersion)).all()),
                len(s.exec(select(AdminAction)).all()))


def test_vault_stopped_mid_test_then_restarted(vault_app, openbao_private):
    app, svc, auth = vault_app
    client = app.test_client()
    url = "/api/v1/credentials/erp-cc/secrets/client_secret"
    assert client.put(url, json={"value": "before"}, headers=auth).status_code == 200
    assert client.get("/readyz").json["checks"]["secret_store"] == "ok"
    before = _rows(svc)

    openbao_private.stop()
    r = client.put(url, json={"value": "during"}, headers=auth)
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert r.json["code"] == "secret_store_unavailable" and int(r.headers["Retry-After"]) > 0
    assert "during" not in r.get_data(as_text=True) and "127.0.0.1" not in r.get_data(as_text=True)
    assert _rows(svc) == before  # nothing half-written
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["secret_store"] == "unavailable"
    # Metadata comes from the database, so listing still works while the vault is down.
    listed = client.get("/api/v1/credentials/erp-cc/secrets", headers=auth)
    assert listed.status_code == 200 and listed.json["items"][0]["version"] == 1
    with pytest.raises(Exception) as caught:
        svc.secret_store.get("credential/erp-cc/client_secret")
    assert caught.value.status == 503

    # A new credential's first secret while down: no SecretRef row appears either.
    r = client.put("/api/v1/integration-users/order-sync/secrets/client_secret", json={"value": "x"}, headers=auth)
    assert r.status_code == 503
    assert _rows(svc) == before

    openbao_private.restart()  # dev mode starts empty: the store's version is 0 again
    assert client.get("/readyz").json["checks"]["secret_store"] == "ok"
    r = client.put(url, json={"value": "after"}, headers=auth)
    assert r.status_code == 200, r.json
    assert r.json["version"] == 1  # recorded from what the store reports, not from the old row
    assert svc.secret_store.get("credential/erp-cc/client_secret").reveal() == "after"
