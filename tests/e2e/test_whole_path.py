"""Issues #4 and #5 end to end: govern token -> upstream token -> proxied call, over real HTTP, with every
govern service real (tests/e2e/conftest.py) and the fake authlib upstream and resource server as the systems."""
from __future__ import annotations

import base64

import pytest
import requests

from govern.client import GovernAuth, GovernClientError, GovernProxySession
from tests.e2e.conftest import API_KEY, BASIC_PASSWORD, USER_SECRET

pytestmark = [pytest.mark.db, pytest.mark.slow]


def _revoke_all_access_tokens(upstream) -> None:
    """The upstream forgets every access token it issued (as after a key roll): the next call is a 401."""
    with upstream.lock:
        upstream.access_tokens.clear()


def test_client_secret_basic_user_gets_tokens_for_all_three_grants(live):
    token = live.govern_token()
    for name, grant in (("shop-orders", "client_credentials"), ("shop-user-orders", "refresh_token"),
                        ("shop-jwt-orders", "jwt_bearer")):
        resp = live.upstream_token(token, name)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert body["token_type"] == "Bearer" and body["scope"] == "orders.read"
        assert 0 < body["expires_in"] <= 15 * 60  # capped by the permission set's max_token_lifetime
        assert live.upstream.access_token_valid(body["access_token"])
        assert live.upstream.count(grant) == 1, (grant, dict(live.upstream.counts))
        # asked again: served from govern's cache, no second upstream call
        again = live.upstream_token(token, name)
        assert again.json()["access_token"] == body["access_token"]
        assert live.upstream.count(grant) == 1
    # the refresh grant rotated alice's refresh token: the new one is in the vault, the old one is dead
    assert not live.upstream.refresh_token_valid(live.refresh_token)
    who = requests.get(live.upstream.url + "/api/whoami", timeout=10,
                       headers={"Authorization": "Bearer " + live.upstream_token(token, "shop-user-orders")
                                .json()["access_token"]}).json()
    assert who["user"] == "alice" and who["client_id"] == "shop-rt-client"


def test_private_key_jwt_user_through_govern_client(live):
    auth = GovernAuth(live.base, "jwt-sync", private_key=live.user_private_pem, named_credential="shop-orders",
                      scopes=["orders.read"])
    resp = requests.get(live.upstream.url + "/api/orders", auth=auth, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["orders"] == [{"id": 1, "total": 10}]
    assert live.upstream.count("client_credentials") == 1


def test_govern_auth_recovers_from_an_upstream_401_with_a_fresh_token(live):
    auth = GovernAuth(live.base, "order-sync", client_secret=USER_SECRET, named_credential="shop-orders",
                      scopes=["orders.read"])
    assert requests.get(live.upstream.url + "/api/orders", auth=auth, timeout=10).status_code == 200
    _revoke_all_access_tokens(live.upstream)
    # The client retries once after the 401 with renew=True; govern's cached token is stale for the upstream,
    # so govern must not hand it out again once the client says so.
    resp = requests.get(live.upstream.url + "/api/orders", auth=auth, timeout=10)
    assert resp.status_code == 200, resp.text


def test_proxy_injects_each_credential_kind(live):
    token = live.govern_token(scope="orders.read items.read")
    orders = live.proxy(token, "shop-orders", "api/orders")
    assert orders.status_code == 200, orders.text
    assert orders.json()["scope"] == "orders.read"
    for name, path in (("shop-user-orders", "api/orders"), ("shop-jwt-orders", "api/orders")):
        resp = live.proxy(token, name, path)
        assert resp.status_code == 200, resp.text
    assert live.proxy(token, "shop-user-orders", "api/orders").json()["user"] == "alice"

    items = live.proxy(token, "stock-api", "v1/items/42")
    assert items.status_code == 200, items.text
    seen = live.resources.last()
    assert seen.headers.get("X-Api-Key") == API_KEY
    assert token not in str(seen.headers)  # the caller's govern token never reaches the system

    legacy = live.proxy(token, "stock-legacy", "v1/items/7")
    assert legacy.status_code == 200, legacy.text
    expected = "Basic " + base64.b64encode(f"svc-user:{BASIC_PASSWORD}".encode()).decode()
    assert live.resources.last().headers.get("Authorization") == expected


def test_proxy_refreshes_and_retries_once_after_an_upstream_401(live):
    token = live.govern_token()
    first = live.proxy(token, "shop-orders", "api/orders")
    assert first.status_code == 200, first.text
    assert live.upstream.count("client_credentials") == 1
    _revoke_all_access_tokens(live.upstream)
    second = live.proxy(token, "shop-orders", "api/orders")
    assert second.status_code == 200, second.text
    assert live.upstream.count("client_credentials") == 2  # one fresh token, fetched by the real token source
    # and the fresh token is what govern now hands out and caches
    third = live.proxy(token, "shop-orders", "api/orders")
    assert third.status_code == 200 and live.upstream.count("client_credentials") == 2
    # the refresh_token credential goes the same way: its refresh token rotates once more
    assert live.proxy(token, "shop-user-orders", "api/orders").status_code == 200
    _revoke_all_access_tokens(live.upstream)
    assert live.proxy(token, "shop-user-orders", "api/orders").status_code == 200
    assert live.upstream.count("refresh_token") == 2


def test_proxy_denials_name_their_rule_and_are_in_the_decision_log(live):
    token = live.govern_token(scope="orders.read items.read")
    cases = [("GET", "stock-api", "v1/admin/users"),       # a path no grant covers
             ("POST", "stock-api", "v1/items/1"),          # a method the grant does not give
             ("GET", "shop-orders", "api/whoami")]         # another path on an OAuth credential
    before = live.resources.count
    rules = []
    for method, name, path in cases:
        resp = live.proxy(token, name, path, method=method, json={} if method == "POST" else None)
        assert resp.status_code == 403, (name, path, resp.text)
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        problem = resp.json()
        assert problem["code"] == "access_denied" and problem.get("rule"), problem
        rules.append(problem["rule"])
    assert live.resources.count == before  # nothing reached the system
    denied = [d for d in live.decisions() if d.action == "proxy" and not d.allowed]
    assert [(d.method, d.named_credential) for d in denied] == [(m, n) for m, n, _ in cases]
    assert [d.rules[0] for d in denied] == rules
    assert all(d.integration_user == "order-sync" for d in denied)
    # the govern-only denial (an unknown bearer) is a 401, not an upstream call
    assert live.proxy("not-a-token", "stock-api", "v1/items/1").status_code == 401


def test_govern_proxy_session_against_the_real_app(live):
    session = GovernProxySession(live.base, "order-sync", client_secret=USER_SECRET, named_credential="stock-api",
                                 scopes=["items.read"])
    resp = session.get("/v1/items/9")
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == "/v1/items/9"
    denied = session.get("/v1/secret-admin")
    assert denied.status_code == 403 and denied.json()["code"] == "access_denied"


def test_govern_auth_raises_the_denial_with_its_rule(live):
    auth = GovernAuth(live.base, "order-sync", client_secret=USER_SECRET, named_credential="stock-api",
                      scopes=["orders.write"])
    with pytest.raises(GovernClientError) as err:
        requests.get(live.resources.url + "/v1/items/1", auth=auth, timeout=10)
    assert err.value.status in (400, 403)


def test_rejected_token_forces_one_refresh_only_for_the_token_govern_holds(live):
    token = live.govern_token()
    first = live.upstream_token(token, "shop-orders").json()["access_token"]
    assert live.upstream.count("client_credentials") == 1
    # a value govern never handed out: no upstream call, the held token comes back
    other = requests.post(f"{live.base}/api/v1/named-credentials/shop-orders/token", timeout=10,
                          json={"scope": "orders.read", "rejected_token": "not-the-token"},
                          headers={"Authorization": f"Bearer {token}"})
    assert other.json()["access_token"] == first and live.upstream.count("client_credentials") == 1
    renewed = requests.post(f"{live.base}/api/v1/named-credentials/shop-orders/token", timeout=10,
                            json={"scope": "orders.read", "rejected_token": first},
                            headers={"Authorization": f"Bearer {token}"}).json()["access_token"]
    assert renewed != first and live.upstream.count("client_credentials") == 2
    # reporting the old token again changes nothing: govern already holds a newer one
    again = requests.post(f"{live.base}/api/v1/named-credentials/shop-orders/token", timeout=10,
                          json={"scope": "orders.read", "rejected_token": first},
                          headers={"Authorization": f"Bearer {token}"}).json()["access_token"]
    assert again == renewed and live.upstream.count("client_credentials") == 2


def test_static_secret_is_read_once_then_re_read_after_a_rotation_and_a_401(live):
    token = live.govern_token(scope="items.read")
    store = live.services.secret_store
    reads = []
    original = store.get

    def counting_get(path, *a, **kw):
        reads.append(path)
        return original(path, *a, **kw)

    store.get = counting_get
    for _ in range(3):
        assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    assert len(reads) == 1  # kept in memory: not a store read per call
    from tests.e2e.conftest import put_secret

    put_secret(live.runner, ["stock-key", "--field", "api_key"], "e2e-rotated-api-key")
    live.resources.unauthorized_next(1)  # the system already wants the new key
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 401
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    assert live.resources.last().headers.get("X-Api-Key") == "e2e-rotated-api-key"
