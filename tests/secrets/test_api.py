"""The secrets API: write-only values, metadata answers, problem+json errors, admin actions."""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.domain.secret import MAX_SECRET_BYTES
from govern.store.tables import AdminAction, SecretRef
from tests.factories import ACTOR, make_landscape


@pytest.fixture
def auth(admin_token, services):
    make_landscape(services, protocol="oauth2_refresh_token", client_secret=None)
    return {"Authorization": f"Bearer {admin_token}"}


def test_put_answers_metadata_only_and_records_an_admin_action(client, auth, services):
    r = client.put("/api/v1/credentials/erp-cc/secrets/refresh_token?principal=default", json={"value": "rt-value-1"},
                   headers=auth)
    assert r.status_code == 200, r.json
    assert r.json["ref"] == "credential/erp-cc/principal/default/refresh_token"
    assert r.json["version"] == 1 and r.json["status"].startswith("set on ") and r.json["status"].endswith("version 1")
    assert "rt-value-1" not in r.get_data(as_text=True)
    assert services.secret_store.get(r.json["ref"]).reveal() == "rt-value-1"
    r = client.put("/api/v1/integration-users/order-sync/secrets/client_secret", json={"value": "cs"}, headers=auth)
    assert r.status_code == 200 and r.json["ref"] == "integration_user/order-sync/client_secret"
    listed = client.get("/api/v1/credentials/erp-cc/secrets", headers=auth)
    assert listed.status_code == 200
    assert [i["ref"] for i in listed.json["items"]] == ["credential/erp-cc/principal/default/refresh_token"]
    assert client.get("/api/v1/integration-users/order-sync/secrets", headers=auth).json["items"][0]["version"] == 1
    with services.sessions() as s:
        actions = s.exec(select(AdminAction).where(AdminAction.actor != ACTOR)).all()  # not the setup's apply
    assert [(a.actor, a.action) for a in actions] == [("root-admin", "secret.put")] * 2


@pytest.mark.parametrize("url, body, status, code", [
    ("/api/v1/credentials/nope/secrets/client_secret", {"value": "v"}, 404, "not_found"),
    ("/api/v1/credentials/erp-cc/secrets/client_secret?principal=ghost", {"value": "v"}, 404, "not_found"),
    ("/api/v1/credentials/erp-cc/secrets/api_key", {"value": "v"}, 422, "validation_failed"),
    ("/api/v1/credentials/erp-cc/secrets/refresh_token", {"value": "v"}, 422, "validation_failed"),
    ("/api/v1/credentials/erp-cc/secrets/client_secret", {"value": ""}, 422, "validation_failed"),
    ("/api/v1/credentials/erp-cc/secrets/client_secret", {"value": "x" * (MAX_SECRET_BYTES + 1)}, 422, "validation_failed"),
    ("/api/v1/credentials/erp-cc/secrets/client_secret", {"secret": "v"}, 422, "validation_failed"),
    ("/api/v1/integration-users/ghost/secrets/client_secret", {"value": "v"}, 404, "not_found"),
])
def test_bad_input_is_problem_json_and_writes_nothing(client, auth, services, url, body, status, code):
    r = client.put(url, json=body, headers=auth)
    assert (r.status_code, r.mimetype, r.json["code"]) == (status, "application/problem+json", code)
    with services.sessions() as s:
        assert s.exec(select(SecretRef)).all() == []
    assert services.secret_store.list_paths() == []


def test_needs_an_admin(client, services):
    from govern.store.admins import create_admin, issue_token

    make_landscape(services, client_secret=None)
    assert client.put("/api/v1/credentials/erp-cc/secrets/client_secret", json={"value": "v"}).status_code == 401
    create_admin(services.sessions, "reader", "correct horse battery staple", "auditor")
    reader = {"Authorization": f"Bearer {issue_token(services.sessions, 'reader')}"}
    r = client.put("/api/v1/credentials/erp-cc/secrets/client_secret", json={"value": "v"}, headers=reader)
    assert r.status_code == 403
    assert client.get("/api/v1/credentials/erp-cc/secrets", headers=reader).status_code == 200
