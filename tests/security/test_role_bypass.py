"""Attack vectors: role bypass and forged credentials on the management API and the console.

Every management route is tried with no credentials, with forged and foreign credentials, and with a
real token of each role below the one the route needs. The expectations are the product's (an auditor
only reads, an operator runs rotations, only an admin changes the landscape, secrets and connections),
written here, not read from the code; a management route that this table does not name fails the test.
Positive controls: the right role gets through.
"""
from __future__ import annotations

import base64
import json

import pytest

from tests.admin.conftest import PASSWORD, csrf_from, sign_in

# (method, path, the least role that may call it); path parameters are filled with plausible values.
MANAGEMENT = [
    ("GET", "/api/v1/systems", "auditor"), ("GET", "/api/v1/systems/erp", "auditor"),
    ("GET", "/api/v1/credentials", "auditor"), ("GET", "/api/v1/credentials/erp-cc", "auditor"),
    ("GET", "/api/v1/named-credentials", "auditor"), ("GET", "/api/v1/named-credentials/erp-api", "auditor"),
    ("GET", "/api/v1/integration-users", "auditor"), ("GET", "/api/v1/integration-users/order-sync", "auditor"),
    ("GET", "/api/v1/permission-sets", "auditor"), ("GET", "/api/v1/permission-sets/reader", "auditor"),
    ("GET", "/api/v1/findings", "auditor"), ("GET", "/api/v1/findings/1", "auditor"),
    ("GET", "/api/v1/audit/runs", "auditor"), ("GET", "/api/v1/decisions", "auditor"),
    ("GET", "/api/v1/breakers", "auditor"), ("GET", "/api/v1/systems/erp/breaker", "auditor"),
    ("GET", "/api/v1/rotations", "auditor"), ("GET", "/api/v1/rotations/1", "auditor"),
    ("GET", "/api/v1/credentials/erp-cc/secrets", "auditor"),
    ("GET", "/api/v1/integration-users/order-sync/secrets", "auditor"),
    ("POST", "/api/v1/rotations", "operator"), ("POST", "/api/v1/rotations/1/retry", "operator"),
    ("POST", "/api/v1/rotations/1/confirm", "operator"), ("POST", "/api/v1/rotations/1/acknowledge", "operator"),
    ("POST", "/api/v1/apply", "admin"),
    ("PUT", "/api/v1/credentials/erp-cc/secrets/client_secret", "admin"),
    ("PUT", "/api/v1/integration-users/order-sync/secrets/client_secret", "admin"),
    ("DELETE", "/api/v1/credentials/erp-cc/secrets/client_secret", "admin"),
    ("DELETE", "/api/v1/integration-users/order-sync/secrets/client_secret", "admin"),
    ("POST", "/api/v1/credentials/erp-cc/principals/alice/connect", "admin"),
    ("DELETE", "/api/v1/credentials/erp-cc/principals/alice/connection", "admin"),
]
RANK = {"auditor": 0, "operator": 1, "admin": 2}
# Routes that are not management routes (public, or authenticated with a govern access token).
NOT_MANAGEMENT = {"/api/v1/openapi.json", "/api/v1/named-credentials/<name>/token",
                  "/api/v1/named-credentials/<name>/queued/<int:call_id>"}


def _b64(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


FORGED = {
    "none": None,
    "empty bearer": "Bearer ",
    "basic admin": "Basic " + base64.b64encode(b"admin:admin").decode(),
    "gvn guess": "Bearer gvn_" + "A" * 43,
    "gvn empty": "Bearer gvn_",
    "gvn sql": "Bearer gvn_' OR '1'='1",
    "alg none jwt": "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "root-admin", "role": "admin"}) + ".",
    "lowercase scheme gvn": "bearer gvn_" + "B" * 43,
    "two tokens": "Bearer gvn_x gvn_y",
    "non-ascii": "Bearer gvn_\u00e9\u00e9",
}


def _body(method: str) -> dict:
    return {"json": {"value": "not-a-real-secret", "secret_ref": "credential/erp-cc/client_secret"}} \
        if method in ("PUT", "POST") else {}


def _call(client, method, path, header):
    headers = {"Authorization": header} if header is not None else {}
    if path == "/api/v1/apply":
        return client.open(path, method=method, data="apiVersion: govern/v1\nkind: Landscape\n",
                           headers={**headers, "Content-Type": "application/yaml"})
    return client.open(path, method=method, headers=headers, **_body(method))


@pytest.fixture
def role_tokens(services):
    from govern.store.admins import create_admin, issue_token

    tokens = {}
    for role in RANK:
        create_admin(services.sessions, f"{role}-api", PASSWORD, role)
        tokens[role] = issue_token(services.sessions, f"{role}-api")
    return tokens


def test_every_management_route_is_in_the_table(app):
    ours = {path for _, path, _ in MANAGEMENT}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule in NOT_MANAGEMENT:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            sample = [p for m, p, _ in MANAGEMENT if m == method and _matches(rule, p)]
            assert sample, f"{method} {rule.rule} has no row in MANAGEMENT"
    assert len(ours) >= 25


def _matches(rule, path: str) -> bool:
    adapter = rule.map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method=next(iter(rule.methods - {"HEAD", "OPTIONS"})))
    except Exception:  # noqa: BLE001 - another rule's path
        return False
    return endpoint == rule.endpoint


def test_positive_control_each_role_reaches_its_routes(client, role_tokens):
    for method, path, least in MANAGEMENT:
        resp = _call(client, method, path, f"Bearer {role_tokens[least]}")
        # the role passes the gate: whatever the route then says, it is not the gate's 401/403 and never a 500
        assert resp.status_code not in (401, 403), (method, path, least, resp.get_data(as_text=True)[:200])
        assert resp.status_code < 500, (method, path, resp.get_data(as_text=True)[:300])


def test_forged_and_missing_credentials_are_refused_everywhere(client):
    tried = 0
    for method, path, _ in MANAGEMENT:
        for name, header in FORGED.items():
            resp = _call(client, method, path, header)
            assert resp.status_code == 401, (name, method, path, resp.status_code)
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            tried += 1
    assert tried == len(MANAGEMENT) * len(FORGED)


def test_a_lower_role_is_refused_and_changes_nothing(client, role_tokens, services):
    from govern.store.tables import AdminAction

    def actions():
        with services.sessions() as s:
            return s.query(AdminAction).count()

    before = actions()
    tried = 0
    for method, path, least in MANAGEMENT:
        for role, rank in RANK.items():
            if rank >= RANK[least]:
                continue
            resp = _call(client, method, path, f"Bearer {role_tokens[role]}")
            assert resp.status_code == 403, (role, method, path, resp.status_code)
            assert resp.json["code"] == "forbidden"
            tried += 1
    assert tried == 18  # 4 operator routes x 1 lower role + 7 admin routes x 2
    assert actions() == before


def test_a_revoked_admins_token_stops_working(client, role_tokens, services):
    from sqlmodel import select

    from govern.store.db import session_scope
    from govern.store.tables import AdminUser

    assert _call(client, "GET", "/api/v1/systems", f"Bearer {role_tokens['admin']}").status_code == 200
    with session_scope(services.sessions) as s:  # what disabling a console user does
        s.exec(select(AdminUser).where(AdminUser.external_id == "admin-api")).one().disabled = True
    assert _call(client, "GET", "/api/v1/systems", f"Bearer {role_tokens['admin']}").status_code == 401


# --- the console: append-only records cannot be written through flask-admin's generic views ------------

APPEND_ONLY = ("decisions", "admin_actions", "rotations", "findings")
GENERIC = ("new/", "edit/?id=1", "delete/", "action/", "ajax/update/")


def test_console_generic_write_views_of_append_only_records_are_closed(client, services):
    from govern.store.admins import create_admin
    from govern.store.tables import AdminAction, Decision

    create_admin(services.sessions, "console-admin", PASSWORD, "admin")
    assert sign_in(client, "console-admin").status_code in (302, 303)  # positive control: signed in
    token = csrf_from(client.get("/admin/integration_users/").get_data(as_text=True))

    def counts():
        with services.sessions() as s:
            return s.query(Decision).count(), s.query(AdminAction).count()

    before = counts()
    for view in APPEND_ONLY:
        for tail in GENERIC:
            resp = client.post(f"/admin/{view}/{tail}", data={"csrf_token": token, "id": "1", "rowid": "1",
                                                               "action": "delete", "allowed": "y",
                                                               "list_form_pk": "1", "name": "x"})
            assert resp.status_code in (302, 303, 400, 403, 404, 405), (view, tail, resp.status_code)
            if resp.status_code in (302, 303):
                assert "/edit/" not in resp.headers.get("Location", ""), (view, tail)
    after = counts()
    assert after[0] == before[0]  # no decision created or deleted
