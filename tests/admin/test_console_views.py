"""Every console view renders for every role, shows no create/edit/delete controls, and never shows a secret."""
from __future__ import annotations

import pytest

from tests.admin.conftest import sign_in
from tests.factories import make_landscape

PAGES = ["/admin/", "/admin/systems/", "/admin/credentials/", "/admin/principals/", "/admin/named_credentials/",
         "/admin/integration_users/", "/admin/permission_sets/", "/admin/grants/", "/admin/assignments/",
         "/admin/policies/", "/admin/secrets/", "/admin/rotation_schedule/", "/admin/rotations/", "/admin/decisions/", "/admin/findings/",
         "/admin/suppressions/", "/admin/admin_actions/"]


@pytest.fixture
def landscape(services):
    return make_landscape(services)


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_every_page_renders(client, console_users, clock, landscape, role):
    assert sign_in(client, console_users[role]).status_code == 302
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.get_data(as_text=True)
        assert "s3cret-client-secret-value" not in html
        assert "/new/" not in html and "/edit/" not in html and "/delete/" not in html, page


def test_details_pages_render(client, console_users, clock, landscape, services):
    from sqlmodel import select

    from govern.store.tables import IntegrationUser, System

    sign_in(client, console_users["admin"])
    with services.sessions() as s:
        user_id = s.exec(select(IntegrationUser)).one().id
        system_id = s.exec(select(System)).one().id
    page = client.get(f"/admin/integration_users/details/?id={user_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "order-sync-ps" in html and "only a hash is kept" in html
    assert client.get(f"/admin/systems/details/?id={system_id}").status_code == 200
    ps_page = client.get("/admin/permission_sets/details/?id=1").get_data(as_text=True)
    assert "order-sync" in ps_page and "erp-api" in ps_page


def test_decisions_are_searchable_by_correlation_id(client, console_users, clock, services):
    from govern.store.db import session_scope
    from govern.store.tables import Decision

    with session_scope(services.sessions) as s:
        for i, cid in enumerate(("corr-aaa", "corr-bbb")):
            s.add(Decision(correlation_id=cid, integration_user="order-sync", action="call", allowed=bool(i),
                           named_credential="erp-api", prev_hash=str(i), hash=f"h{i}"))
    sign_in(client, console_users["auditor"])
    html = client.get("/admin/decisions/?search=corr-bbb").get_data(as_text=True)
    assert "corr-bbb" in html and "corr-aaa" not in html


def test_decisions_show_their_outcome_and_error(client, console_users, clock, services):
    from govern.store.db import session_scope
    from govern.store.tables import Decision

    with session_scope(services.sessions) as s:
        for i, (outcome, code) in enumerate((("allow", None), ("deny", None), ("error", "upstream_not_configured"))):
            s.add(Decision(correlation_id=f"corr-{outcome}", integration_user="order-sync", action="proxy",
                           allowed=outcome != "deny", outcome=outcome, error_code=code, named_credential="erp-api",
                           prev_hash=str(i), hash=f"h{i}"))
    sign_in(client, console_users["auditor"])
    html = client.get("/admin/decisions/").get_data(as_text=True)
    assert '<span class="badge badge-success">allow</span>' in html
    assert '<span class="badge badge-danger">deny</span>' in html
    assert '<span class="badge badge-warning">error</span> <code>upstream_not_configured</code>' in html


def test_no_page_loads_anything_from_another_origin(client, console_users, clock, landscape):
    import re

    sign_in(client, console_users["admin"])
    pages = PAGES + ["/admin/login", "/admin/integration_users/details/?id=1", "/admin/integration_users/save/"]
    external = re.compile(r'(?:src|href)\s*=\s*["\'](?:https?:)?//', re.I)
    for page in pages:
        html = client.get(page).get_data(as_text=True)
        assert not external.search(html), page
        for asset in re.findall(r'(?:src|href)="(/admin/[^"]+\.(?:css|js)[^"]*)"', html):
            assert client.get(asset).status_code == 200, asset
