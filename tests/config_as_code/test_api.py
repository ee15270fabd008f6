"""The landscape management API: reads for auditors, apply for admins, problem+json on bad documents."""
import datetime as dt

import pytest

from tests.config_as_code.conftest import EXAMPLE
from tests.config_as_code.test_validate import BASE

YAML = {"Content-Type": "application/yaml"}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auditor_token(services):
    from govern.store.admins import create_admin, issue_token

    create_admin(services.sessions, "reader", "correct horse battery staple", "auditor")
    return issue_token(services.sessions, "reader")


@pytest.fixture
def applied(client, admin_token):
    response = client.post("/api/v1/apply", data=EXAMPLE.read_text(), headers={**YAML, **auth(admin_token)})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_apply_returns_the_plan_and_records_an_admin_action(applied, client, admin_token, dump):
    assert applied["applied"] is True and applied["counts"]["create"] >= 30
    assert {"kind": "integration_user", "id": "erp-order-sync", "action": "create"} in applied["changes"]
    (action,) = [r for r in dump()["admin_action"]]
    again = client.post("/api/v1/apply?dry_run=true", data=EXAMPLE.read_text(), headers={**YAML, **auth(admin_token)})
    body = again.get_json()
    assert body["changes"] == [] and body["dry_run"] is True and body["applied"] is False
    assert len(dump()["admin_action"]) == 1
    assert "root-admin" in action and "apply" in action


def test_dry_run_and_prune_flags(client, admin_token, dump):
    before = dump()
    response = client.post("/api/v1/apply?dry_run=true", data=BASE, headers={**YAML, **auth(admin_token)})
    assert response.status_code == 200 and response.get_json()["counts"]["create"] == 5
    assert dump() == before
    client.post("/api/v1/apply", data=BASE, headers={**YAML, **auth(admin_token)})
    pruned = client.post("/api/v1/apply?prune=true", data=BASE.split("integration_users:")[0],
                         headers={**YAML, **auth(admin_token)}).get_json()
    assert [(c["action"], c["id"]) for c in pruned["changes"]] == [("delete", "orders"), ("delete", "order-sync")]


def test_bad_document_is_422_problem_json_listing_every_error(client, admin_token, dump):
    before = dump()
    bad = BASE.replace("credential: erp-cc", "credential: nope").replace("10.20.0.0/16", "10.20.0.0/99")
    response = client.post("/api/v1/apply", data=bad, headers={**YAML, **auth(admin_token)})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "validation_failed"
    assert [(e["line"], e["path"]) for e in body["errors"]] == [(14, "named_credentials[0].credential"),
                                                                (18, "integration_users[0].ip_ranges[0]")]
    assert dump() == before


def test_apply_needs_yaml_content_type(client, admin_token):
    response = client.post("/api/v1/apply", json={"a": 1}, headers=auth(admin_token))
    assert response.status_code == 415


def test_auditor_cannot_apply_and_no_token_is_401(client, auditor_token):
    assert client.post("/api/v1/apply", data=BASE, headers={**YAML, **auth(auditor_token)}).status_code == 403
    assert client.post("/api/v1/apply", data=BASE, headers=YAML).status_code == 401
    assert client.get("/api/v1/systems").status_code == 401


def test_lists_and_gets(applied, client, auditor_token):
    systems = client.get("/api/v1/systems", headers=auth(auditor_token)).get_json()
    assert [s["id"] for s in systems["items"]] == sorted(s["id"] for s in systems["items"])
    assert len(systems["items"]) >= 5 and systems["next_cursor"] is None
    erp = client.get("/api/v1/systems/erp-s4", headers=auth(auditor_token)).get_json()
    assert erp["owner"] == "erp-team@acme.example" and erp["maintenance_windows"][0]["day"] == "sun"
    ps = client.get("/api/v1/permission-sets/order-writer", headers=auth(auditor_token)).get_json()
    assert ps["grants"][0]["named_credential"] == "salesforce-rest"
    assert ps["assignments"] == [{"integration_user": "erp-order-sync", "until": None}]
    user = client.get("/api/v1/integration-users/data-migration-2026", headers=auth(auditor_token)).get_json()
    assert user["permission_sets"] == [{"permission_set": "crm-admin-backfill", "until": "2026-12-31"}]
    assert user["client_secret"] == {"set": False, "set_at": None}
    nc = client.get("/api/v1/named-credentials/salesforce-bulk", headers=auth(auditor_token)).get_json()
    assert nc["api_type"] == "Bulk" and nc["max_body"] == 150 * 1024 * 1024
    missing = client.get("/api/v1/credentials/nope", headers=auth(auditor_token))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_pagination_walks_every_item_once(applied, client, auditor_token):
    seen, cursor = [], None
    while True:
        url = "/api/v1/integration-users?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=auth(auditor_token)).get_json()
        seen += [u["id"] for u in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 10  # the example's users, sandbox-app included
    assert client.get("/api/v1/systems?limit=0", headers=auth(auditor_token)).status_code == 400
    assert client.get("/api/v1/systems?cursor=%%%", headers=auth(auditor_token)).status_code == 400


def test_credentials_show_secret_metadata_never_values(applied, client, auditor_token, services):
    from govern.store.db import session_scope
    from govern.store.tables import SecretRef

    with session_scope(services.sessions) as s:
        s.add(SecretRef(external_id="credential/erp-oauth/principal/default/client_secret", owner_kind="credential",
                        owner="erp-oauth", principal="default", field="client_secret", path="govern/erp-oauth/default",
                        current_version=3, set_at=dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)))
    body = client.get("/api/v1/credentials/erp-oauth", headers=auth(auditor_token)).get_json()
    assert body["principals"][0]["name"] == "default"
    (secret,) = body["secrets"]
    assert secret["field"] == "client_secret" and secret["status"] == "set on 2026-11-02, version 3"
    assert "value" not in secret and "path" not in secret
    listed = client.get("/api/v1/credentials", headers=auth(auditor_token)).get_json()["items"]
    assert {c["id"] for c in listed} >= {"erp-oauth", "salesforce-jwt"}


def test_integration_user_shows_secret_status_not_the_hash(client, auditor_token, services):
    from tests.factories import make_landscape

    canary = "canary-91ab-client-secret"
    make_landscape(services, client_secret=canary)
    response = client.get("/api/v1/integration-users/order-sync", headers=auth(auditor_token))
    body = response.get_json()
    assert body["client_secret"]["set"] is True
    assert canary not in response.get_data(as_text=True) and "scrypt" not in response.get_data(as_text=True)
    assert "client_secret_hash" not in body
