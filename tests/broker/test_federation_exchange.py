"""RFC 8693 token exchange at /oauth/token (issue #21): a govern access token is exchanged for a narrowed upstream
token of a named credential from the fake upstream authorization server, with the same decision as
`POST /api/v1/named-credentials/{name}/token`; errors are RFC 8693 section 2.2.2 / RFC 6749 section 5.2; and
authlib's standard client (its requests OAuth2Session) makes the exchange against a live govern, unchanged.
The landscape comes from governance.yaml through apply (tests/config_as_code/world.py)."""
from __future__ import annotations

import threading

import pytest
import requests
from werkzeug.datastructures import MultiDict
from werkzeug.serving import make_server

from tests.broker.test_federation import ASSERTION_TYPE, federated_user, mint
from tests.config_as_code.world import USER, build_world, find
from tests.fakes.oidc_issuer import OidcIssuer

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture
def world(settings, fake_upstream, resources):
    built = build_world(settings, fake_upstream, resources)
    yield built
    built.services.close()


def exchange(world, token: str | None = None, **form):
    data = {"grant_type": GRANT, "subject_token": world.govern_token() if token is None else token,
            "subject_token_type": ACCESS, "audience": "shop-orders", **form}
    return world.client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})


def oauth_error(resp, status: int, error: str) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == error, body
    return body["error_description"]


def upstream_scope(world, token: str) -> str:
    who = requests.get(world.upstream.url + "/api/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert who.status_code == 200, who.text
    return who.json()["scope"]


def test_an_exchange_returns_a_narrowed_upstream_token_as_rfc_8693_says(world):
    # the upstream client may have orders.write; the user's permission set grants orders.read only, and no scope
    # asked means the granted ones, as at the upstream token endpoint
    resp = exchange(world)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer"
    assert body["scope"] == "orders.read" and 0 < body["expires_in"] <= 900
    assert upstream_scope(world, body["access_token"]) == "orders.read"  # the upstream's own view of it
    # the same decision as the upstream token endpoint: allowed, logged with the scopes asked and granted
    decision = [d for d in world.decisions() if d.action == "token"][-1]
    assert decision.outcome == "allow" and decision.integration_user == USER
    assert decision.named_credential == "shop-orders" and decision.scopes_granted == ["orders.read"]
    # and the same token as the existing endpoint, which stays
    existing = world.upstream_token("shop-orders", "orders.read")
    assert existing.status_code == 200 and existing.get_json()["access_token"] == body["access_token"]


def test_resource_names_the_named_credential_by_its_govern_url(world):
    url = world.services.settings.public_endpoint("/api/v1/named-credentials/shop-orders")
    resp = exchange(world, audience=None, resource=url, scope="orders.read")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["scope"] == "orders.read"


@pytest.mark.parametrize("form, status, error, says", [
    ({"subject_token": ""}, 400, "invalid_request", "subject_token is required"),
    ({"subject_token": "not-a-govern-token"}, 400, "invalid_request", "not a valid govern access token"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}, 400, "invalid_request",
     "subject_token_type"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, 400, "invalid_request",
     "requested_token_type"),
    ({"actor_token": "x", "actor_token_type": ACCESS}, 400, "invalid_request", "actor_token"),
    ({"audience": None}, 400, "invalid_request", "audience"),
    ({"audience": "no-such-api"}, 400, "invalid_target", "no-such-api"),
    ({"audience": None, "resource": "https://elsewhere.example.com/api"}, 400, "invalid_target", "resource"),
    ({"audience": "stock-api"}, 400, "invalid_target", "proxy"),
    ({"scope": "orders.write"}, 400, "invalid_scope", "scope"),
    ({"scope": "orders.read orders.write"}, 400, "invalid_scope", "scope"),
])
def test_refusals_are_rfc_8693_errors(world, form, status, error, says):
    assert says in oauth_error(exchange(world, **form), status, error)


def test_two_targets_and_repeated_parameters_are_refused(world):
    token = world.govern_token()
    base = [("grant_type", GRANT), ("subject_token", token), ("subject_token_type", ACCESS)]
    two = world.client.post("/oauth/token", data=MultiDict(base + [("audience", "shop-orders"), ("audience", "stock-api")]))
    assert "one named credential" in oauth_error(two, 400, "invalid_target")
    again = world.client.post("/oauth/token", data=MultiDict(base + [("audience", "shop-orders"), ("subject_token", token)]))
    assert "more than once" in oauth_error(again, 400, "invalid_request")


def test_a_suspended_users_token_is_refused_and_the_denial_logged(world):
    token = world.govern_token()
    find(world.doc, "integration_users", USER)["status"] = "suspended"
    world.apply()
    assert "may not act" in oauth_error(exchange(world, token), 400, "invalid_request")
    assert [d for d in world.decisions() if d.action == "token"][-1].outcome == "deny"


def test_a_federated_workload_goes_from_its_issuer_token_to_an_upstream_token_with_no_secret(world):
    issuer = OidcIssuer().start()
    try:
        world.doc["integration_users"].append(federated_user(issuer))
        world.apply()
        assertion = mint(world, issuer)
        issued = world.client.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "deployer", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion})
        assert issued.status_code == 200, issued.get_data(as_text=True)
        resp = exchange(world, issued.get_json()["access_token"], scope="orders.read")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert upstream_scope(world, resp.get_json()["access_token"]) == "orders.read"
    finally:
        issuer.stop()


@pytest.fixture
def live_govern(world):
    """The world's app on a real port, for a client library that speaks HTTP."""
    server = make_server("127.0.0.1", 0, world.client.application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="govern-live", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_authlibs_standard_client_exchanges_unchanged(world, live_govern):
    from authlib.integrations.requests_client import OAuth2Session

    # the caller's own govern token, fetched with the same library (client_credentials, client_secret_basic)
    from tests.config_as_code.world import USER_SECRET

    govern = OAuth2Session(USER, USER_SECRET, scope="orders.read items.read")
    subject = govern.fetch_token(live_govern + "/oauth/token", grant_type="client_credentials")["access_token"]
    # RFC 8693 with authlib's generic fetch_token: the grant type and its parameters, nothing govern-specific
    session = OAuth2Session(USER, token_endpoint_auth_method="none")
    token = session.fetch_token(live_govern + "/oauth/token", grant_type=GRANT, subject_token=subject,
                                subject_token_type=ACCESS, audience="shop-orders", scope="orders.read")
    assert token["issued_token_type"] == ACCESS and token["scope"] == "orders.read"
    assert upstream_scope(world, token["access_token"]) == "orders.read"
    # a refusal reaches the library as its OAuth error
    from authlib.integrations.base_client.errors import OAuthError

    with pytest.raises(OAuthError) as refused:
        session.fetch_token(live_govern + "/oauth/token", grant_type=GRANT, subject_token=subject,
                            subject_token_type=ACCESS, audience="no-such-api")
    assert refused.value.error == "invalid_target"
