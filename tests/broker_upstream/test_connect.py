"""Connecting a principal end to end: authorization code + PKCE against the fake upstream."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from govern.domain.secret import secret_ref_name
from govern.store.tables import Principal
from tests.broker_upstream.conftest import wire_credential
from tests.factories import update_entity
from tests.fakes.secret_store import MemorySecretStore

# From GOVERN_PUBLIC_URL (the development default), whatever Host the test client sends.
PUBLIC = "http://127.0.0.1:8000"
CALLBACK = f"{PUBLIC}/oauth/callback"


@pytest.fixture
def connect_env(services, fake_upstream, admin_token, client):
    services.secret_store = MemorySecretStore()
    names = wire_credential(services, fake_upstream, protocol="oauth2_refresh_token")
    fake_upstream.clients["erp-client"].redirect_uris = [CALLBACK]
    update_entity(services, "credentials", names["credential"], authorize_url=fake_upstream.authorize_url)
    return names


def _start(client, admin_token, names, **body):
    return client.post(f"/api/v1/credentials/{names['credential']}/principals/default/connect", json=body,
                       headers={"Authorization": f"Bearer {admin_token}"})


def test_connect_flow_stores_the_refresh_token_and_marks_the_principal(services, client, admin_token, connect_env,
                                                                       fake_upstream):
    names = connect_env
    resp = _start(client, admin_token, names, login_hint="dana")
    assert resp.status_code == 200
    url = resp.get_json()["authorize_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [CALLBACK]
    assert "code_verifier" not in url
    # The browser goes to the upstream, consents, and is sent back to govern's callback.
    back = requests.get(url, allow_redirects=False).headers["Location"]
    assert back.startswith(CALLBACK)
    page = client.get(back[len(PUBLIC):])
    assert page.status_code == 200 and b"Connected" in page.data
    assert fake_upstream.count("authorization_code") == 1
    stored = services.secret_store.get(
        secret_ref_name("credential", names["credential"], "default", "refresh_token")).reveal()
    assert fake_upstream.refresh_token_valid(stored)
    with services.sessions() as s:
        assert s.execute(sa.select(Principal)).scalar_one().connected_at is not None
    # The principal now yields tokens through the refresh-token grant, as its own upstream user.
    token = services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.access_tokens[token.access_token.reveal()].user == "dana"
    # The callback cannot be replayed.
    assert client.get(back[len(PUBLIC):]).status_code == 400


def test_connect_needs_an_admin_token(client, connect_env):
    assert _start(client, "gvn_not-a-token", connect_env).status_code == 401


def test_callback_with_an_unknown_state_is_refused(client, connect_env):
    resp = client.get("/oauth/callback?code=abc&state=forged")
    assert resp.status_code == 400 and resp.mimetype == "application/problem+json"


def test_connect_unknown_principal_is_404(client, admin_token, connect_env):
    resp = client.post(f"/api/v1/credentials/{connect_env['credential']}/principals/nobody/connect",
                       headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status_code == 404
