"""Console writes go through the services, are recorded, and are refused server-side for roles without the right."""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.store.db import session_scope
from govern.store.tables import AdminAction, IntegrationUser, RotationRun, SecretRef
from tests.admin.conftest import csrf_from, sign_in
from tests.factories import ACTOR, make_landscape, put_credential_secret


@pytest.fixture
def landscape(services):
    return make_landscape(services)


def _user_id(services, name="order-sync"):
    with services.sessions() as s:
        return s.exec(select(IntegrationUser).where(IntegrationUser.external_id == name)).one().id


def _as(client, console_users, role):
    assert sign_in(client, console_users[role]).status_code == 302
    return csrf_from(client.get("/admin/").get_data(as_text=True))


def _actions(services):
    with services.sessions() as s:
        return [(a.actor, a.action, a.subject) for a in s.exec(select(AdminAction).order_by(AdminAction.id))
                if a.action not in ("sign_in", "sign_out") and a.actor != ACTOR]


def test_admin_creates_an_integration_user(client, console_users, clock, landscape, services):
    token = _as(client, console_users, "admin")
    response = client.post("/admin/integration_users/save/", data={
        "csrf_token": token, "id": "invoice-push", "name": "Invoice push", "owner": "fin@example.com",
        "justification": "pushes invoices", "review_date": "2027-03-31", "ip_ranges": "10.0.0.0/24, 10.1.0.0/24",
        "scopes": "orders.read"})
    assert response.status_code == 302
    with services.sessions() as s:
        user = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "invoice-push")).one()
    assert user.allowed_cidrs == ["10.0.0.0/24", "10.1.0.0/24"]
    assert ("admin-user", "integration_user.create", "invoice-push") in _actions(services)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Integration user invoice-push created." in page


def test_invalid_input_shows_the_services_messages_and_writes_nothing(client, console_users, clock, landscape,
                                                                      services):
    token = _as(client, console_users, "admin")
    response = client.post("/admin/integration_users/save/", data={"csrf_token": token, "id": "broken",
                                                                   "ip_ranges": "not-a-cidr"})
    assert response.status_code == 200
    assert "ip_ranges" in response.get_data(as_text=True)
    with services.sessions() as s:
        assert s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "broken")).first() is None
    assert _actions(services) == []


def test_operator_suspends_but_cannot_grant_or_set_secrets(client, console_users, clock, landscape, services):
    token = _as(client, console_users, "operator")
    page = client.get(f"/admin/integration_users/details/?id={_user_id(services)}").get_data(as_text=True)
    assert 'id="gv-suspend"' in page
    assert 'id="gv-assign"' not in page and 'id="gv-set-secret"' not in page and 'id="gv-edit-user"' not in page
    assert client.post("/admin/integration_users/status/", data={"csrf_token": token, "user": "order-sync",
                                                                 "status": "suspended"}).status_code == 302
    with services.sessions() as s:
        assert s.get(IntegrationUser, _user_id(services)).status == "suspended"
    for url, data in [("/admin/integration_users/assign/", {"permission_set": "order-sync-ps"}),
                      ("/admin/integration_users/unassign/", {"permission_set": "order-sync-ps"}),
                      ("/admin/integration_users/set-secret/", {"value": "x" * 20}),
                      ("/admin/integration_users/save/", {"id": "new-one"}),
                      ("/admin/credentials/set-secret/", {"credential": "erp-cc", "field": "client_secret",
                                                          "value": "x" * 20})]:
        assert client.post(url, data={"csrf_token": token, "user": "order-sync", **data}).status_code == 403, url
    assert client.get("/admin/integration_users/save/").status_code == 403
    assert [a[1] for a in _actions(services)] == ["integration_user.suspend"]


def test_admin_assigns_and_unassigns(client, console_users, clock, landscape, services):
    from govern.store.tables import Assignment

    token = _as(client, console_users, "admin")
    client.post("/admin/integration_users/unassign/", data={"csrf_token": token, "user": "order-sync",
                                                           "permission_set": "order-sync-ps"})
    with services.sessions() as s:
        assert s.exec(select(Assignment)).all() == []
    client.post("/admin/integration_users/assign/", data={"csrf_token": token, "user": "order-sync",
                                                         "permission_set": "order-sync-ps", "until": "2027-01-31"})
    with services.sessions() as s:
        (assignment,) = s.exec(select(Assignment)).all()
    assert str(assignment.expires_at) == "2027-01-31"
    assert [a[1] for a in _actions(services)] == ["assignment.remove", "assignment.add"]


def test_admin_sets_a_credential_secret_and_sees_only_its_version(client, console_users, clock, landscape,
                                                                  services):
    token = _as(client, console_users, "admin")
    canary = "canary-Zq8Lw3-credential-secret"
    response = client.post("/admin/credentials/set-secret/", data={"csrf_token": token, "credential": "erp-cc",
                                                                   "field": "client_secret", "value": canary})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "version 1" in page and canary not in page
    with services.sessions() as s:
        ref = s.exec(select(SecretRef).where(SecretRef.owner_kind == "credential")).one()
    assert ref.current_version == 1


def test_auditor_sees_no_buttons_and_every_post_is_refused(client, console_users, clock, landscape, services):
    token = _as(client, console_users, "auditor")
    for page in (f"/admin/integration_users/details/?id={_user_id(services)}", "/admin/integration_users/",
                 "/admin/credentials/details/?id=1", "/admin/secrets/", "/admin/rotations/"):
        html = client.get(page).get_data(as_text=True)
        for marker in ('id="gv-suspend"', 'id="gv-assign"', 'id="gv-set-secret"', 'id="gv-new-user"',
                       'id="gv-credential-set-secret"', "gv-unassign", "Rotate now", ">Retry<"):
            assert marker not in html, (page, marker)
    for url in ("/admin/integration_users/status/", "/admin/integration_users/assign/",
                "/admin/integration_users/save/", "/admin/credentials/set-secret/", "/admin/secrets/rotate/",
                "/admin/rotations/retry/", "/admin/rotations/acknowledge/", "/admin/findings/suppress/"):
        response = client.post(url, data={"csrf_token": token, "user": "order-sync", "status": "suspended"})
        assert response.status_code == 403, url
    assert _actions(services) == []


def _rotatable(services, state=None):
    with session_scope(services.sessions) as s:
        ref = SecretRef(external_id="credential/erp-cc/client_secret", owner_kind="credential", owner="erp-cc",
                        field="client_secret", path="credential/erp-cc/client_secret", rotator="static",
                        current_version=1)
        s.add(ref)
        s.flush()
        if state:
            s.add(RotationRun(secret_ref_id=ref.id, rotator="static", state=state, attempts=3,
                              steps=[{"step": "set_pending", "outcome": "failed"}]))
        return ref.id


def test_operator_starts_a_rotation(client, console_users, clock, landscape, services):
    ref_id = _rotatable(services)
    token = _as(client, console_users, "operator")
    assert "Rotate now" in client.get("/admin/secrets/").get_data(as_text=True)
    # A basic credential's password has no rotator (govern.rotation.sync.rotator_for).
    make_landscape(services, system="crm", credential="crm-basic", protocol="basic", named_credential="crm-api",
                   user="crm-sync", permission_set="crm-ps", client_secret=None)
    put_credential_secret(services, "crm-basic", "password", "crm-password-value", principal="default")
    schedule = client.get("/admin/rotation_schedule/").get_data(as_text=True)
    assert f'id="gv-rotate-{ref_id}"' in schedule
    assert "crm-basic" not in schedule  # no rotator: not on the schedule
    response = client.post("/admin/secrets/rotate/", data={"csrf_token": token, "ref": ref_id})
    assert response.status_code == 302
    assert "started" in client.get(response.headers["Location"]).get_data(as_text=True)
    with services.sessions() as s:
        (run,) = s.exec(select(RotationRun)).all()
    assert run.secret_ref_id == ref_id
    assert ("operator-user", "rotation.start", "credential/erp-cc/client_secret") in _actions(services)


def test_operator_acknowledges_a_parked_run(client, console_users, clock, landscape, services):
    _rotatable(services, state="parked")
    token = _as(client, console_users, "operator")
    with services.sessions() as s:
        run_id = s.exec(select(RotationRun)).one().id
    assert f'id="gv-ack-{run_id}"' in client.get("/admin/rotations/").get_data(as_text=True)
    response = client.post("/admin/rotations/acknowledge/", data={"csrf_token": token, "run": run_id})
    assert response.status_code == 302
    with services.sessions() as s:
        steps = s.get(RotationRun, run_id).steps
    assert steps[-1]["step"] == "acknowledge" and steps[-1]["by"] == "operator-user"
    assert f'id="gv-ack-{run_id}"' not in client.get("/admin/rotations/").get_data(as_text=True)


def test_admin_edits_a_user_and_the_change_is_recorded_with_before_and_after(client, console_users, clock,
                                                                             landscape, services):
    token = _as(client, console_users, "admin")
    form = client.get("/admin/integration_users/save/?user=order-sync").get_data(as_text=True)
    assert 'value="team@example.com"' in form
    response = client.post("/admin/integration_users/save/", data={
        "csrf_token": token, "user": "order-sync", "name": "order-sync", "owner": "new-team@example.com",
        "justification": "test", "ip_ranges": "127.0.0.0/8", "scopes": "orders.read, orders.write"})
    assert response.status_code == 302
    with services.sessions() as s:
        action = s.exec(select(AdminAction).where(AdminAction.action == "integration_user.update")).one()
        user = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one()
    assert action.before["owner"] == "team@example.com" and action.after["owner"] == "new-team@example.com"
    assert user.owner == "new-team@example.com"
    # Fields the form does not carry (status, assignments) are kept.
    assert user.status == "active"
    assert "order-sync-ps" in client.get(response.headers["Location"]).get_data(as_text=True)
    # The review date was cleared by the form (left empty): that is part of the recorded change.
    assert "review_date" in action.before


def test_admin_suppresses_a_finding_through_the_audit_store(client, console_users, clock, services):
    from govern.store.tables import Finding, Suppression

    with session_scope(services.sessions) as s:
        s.add(Finding(external_id="fp1", rule_id="GOV-ACCESS-001", severity="high", subject_kind="integration_user",
                      subject="order-sync", title="too broad"))
    with services.sessions() as s:
        finding_id = s.exec(select(Finding)).one().id
    token = _as(client, console_users, "admin")
    assert 'id="gv-suppress-button"' in client.get(f"/admin/findings/details/?id={finding_id}").get_data(as_text=True)
    form = {"csrf_token": token, "finding": finding_id, "owner": "sec@example.com", "justification": "accepted",
            "ticket": "SEC-1"}
    bad = client.post("/admin/findings/suppress/", data={**form, "until": "2020-01-01"})
    assert "must be in the future" in client.get(bad.headers["Location"]).get_data(as_text=True)
    client.post("/admin/findings/suppress/", data={**form, "until": "2027-01-01"})
    with services.sessions() as s:
        (sup,) = s.exec(select(Suppression)).all()
    assert (sup.rule_id, sup.subject, sup.created_by) == ("GOV-ACCESS-001", "order-sync", "admin-user")
    assert ("admin-user", "suppression.add", "GOV-ACCESS-001 order-sync") in _actions(services)
