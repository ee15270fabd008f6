"""Optional OpenID Connect sign-in: only existing users, only with a valid ID token from the configured issuer."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from sqlmodel import select

from govern.store.tables import AdminAction
from tests.admin.fake_oidc import FakeProvider


@pytest.fixture
def provider():
    fake = FakeProvider("govern-console", "provider-client-secret").serve()
    yield fake
    fake.stop()


@pytest.fixture
def sso_client(settings, provider, console_users):
    from govern.app import create_app
    from govern.bootstrap import build_services

    svc = build_services(settings.with_overrides(oidc_issuer=provider.issuer, oidc_client_id="govern-console",
                                                 oidc_client_secret="provider-client-secret"))
    yield create_app({"TESTING": True}, services=svc).test_client(), svc
    svc.close()


def _sso(client, provider):
    start = client.get("/admin/login/sso/")
    assert start.status_code == 302 and start.headers["Location"].startswith(provider.issuer)
    back = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302
    target = urlsplit(back.headers["Location"])
    return client.get(f"{target.path}?{target.query}")


def test_an_existing_user_signs_in_with_a_verified_email(sso_client, provider):
    client, svc = sso_client
    assert 'id="gv-sso"' in client.get("/admin/login").get_data(as_text=True)
    provider.claims = {"email": "operator-user", "email_verified": True}
    response = _sso(client, provider)
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/")
    page = client.get("/admin/").get_data(as_text=True)
    assert "operator-user" in page and ">operator<" in page
    with svc.sessions() as s:
        action = s.exec(select(AdminAction).where(AdminAction.action == "sign_in")).one()
    assert action.after == {"method": "oidc"}


@pytest.mark.parametrize("claims", [{"email": "nobody@example.com", "email_verified": True},
                                    {"email": "operator-user", "email_verified": False},
                                    {"email": "operator-user"}])
def test_unknown_or_unverified_identities_are_refused(sso_client, provider, claims):
    client, _ = sso_client
    provider.claims = claims
    response = _sso(client, provider)
    assert response.headers["Location"].endswith("/admin/login")
    assert client.get("/admin/").status_code == 302


def test_an_id_token_signed_by_another_key_is_refused(sso_client, provider):
    client, _ = sso_client
    provider.claims = {"email": "admin-user", "email_verified": True}
    provider.tamper = True
    response = _sso(client, provider)
    assert response.headers["Location"].endswith("/admin/login")
    assert client.get("/admin/").status_code == 302


def test_a_forged_callback_without_the_session_state_is_refused(sso_client, provider):
    client, _ = sso_client
    response = client.get("/admin/login/sso/callback?code=made-up&state=made-up")
    assert response.headers["Location"].endswith("/admin/login")
    assert client.get("/admin/").status_code == 302
