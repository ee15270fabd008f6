"""Attack vectors: a stored static secret never leaves govern, and scopes only ever narrow.

Everything goes the user's way: the landscape through `govern apply`, the secrets through `govern secrets
put`, govern built as `govern serve` builds it and called over real HTTP. Each group starts with a positive
control, so a broken set-up (nothing answers, everything is refused) cannot pass.
"""
from __future__ import annotations

import pytest
import requests

from govern.client import GovernAuth, GovernProxySession, ProxyOnlyCredentialError
from tests.e2e import conftest as e2e
from tests.e2e.conftest import API_KEY, BASIC_PASSWORD, USER_SECRET, resources  # noqa: F401 - fixture

HEADER_VALUE = "canary-custom-header-value-5c1d"
BROAD = "orders.read orders.write admin.write"

# The e2e landscape, with a credential that may hold more than any grant gives, a user allowed a scope
# that no permission set grants, and a custom-header credential.
LANDSCAPE = (e2e.LANDSCAPE
             .replace("scopes: [orders.read, orders.write]}}", "scopes: [orders.read, orders.write, admin.write]}}", 1)
             .replace("    scopes: [orders.read]\n    principals: [{{name: default}}]",
                      "    scopes: [orders.read, orders.write, admin.write]\n    principals: [{{name: default}}]", 1)
             .replace("    scopes: [orders.read, items.read]\n    permission_sets: [shop-reader, stock-reader]",
                      "    scopes: [orders.read, orders.write, items.read]\n"
                      "    permission_sets: [shop-reader, stock-reader]", 1)
             .replace("named_credentials:\n",
                      "  - id: stock-hdr\n    system: stock\n    protocol: custom_header\n    header: X-Stock-Auth\n"
                      "    principals: [{{name: default}}]\nnamed_credentials:\n", 1)
             .replace("integration_users:\n",
                      "  - {{id: stock-custom, credential: stock-hdr, url: \"{resource_url}\", methods: [GET],"
                      " paths: [\"/v1/**\"]}}\nintegration_users:\n", 1)
             .replace("      - {{named_credential: stock-legacy,",
                      "      - {{named_credential: stock-custom, principal: default, methods: [GET],"
                      " paths: [\"/v1/items/**\"]}}\n      - {{named_credential: stock-legacy,", 1))
STATIC = {"stock-api": API_KEY, "stock-legacy": BASIC_PASSWORD, "stock-custom": HEADER_VALUE}


@pytest.fixture
def live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch):  # noqa: F811 - resources
    assert LANDSCAPE.count("admin.write") == 2 and "stock-custom" in LANDSCAPE and "orders.write, items" in LANDSCAPE
    monkeypatch.setattr(e2e, "LANDSCAPE", LANDSCAPE)
    started = e2e.start_live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch)
    e2e.put_secret(runner, ["stock-hdr", "--field", "value"], HEADER_VALUE)
    # The upstream would give govern's client every scope the credential names.
    fake_upstream.register_client("shop-client", secret=e2e.SHOP_CLIENT_SECRET, scope=BROAD)
    yield started
    e2e.stop_live(started)


def _token(live, name: str, govern_token: str, **body) -> requests.Response:
    return requests.post(f"{live.base}/api/v1/named-credentials/{name}/token", json=body or None,
                         headers={"Authorization": f"Bearer {govern_token}"}, timeout=30)


def _assert_no_static_secret(resp: requests.Response) -> None:
    text = resp.text + " ".join(f"{k}: {v}" for k, v in resp.headers.items())
    for value in STATIC.values():
        assert value not in text


# --- static secrets never leave govern ---------------------------------------------------------------------

def test_positive_control_oauth_token_and_proxied_static_call(live):
    token = live.govern_token(scope="orders.read items.read")
    resp = _token(live, "shop-orders", token)
    assert resp.status_code == 200, resp.text
    for name, header in (("stock-api", "X-Api-Key"), ("stock-custom", "X-Stock-Auth")):
        proxied = live.proxy(token, name, "v1/items/1")
        assert proxied.status_code == 200, proxied.text
        assert live.resources.last().headers.get(header) == STATIC[name]
        _assert_no_static_secret(proxied)


STATIC_BODIES = [
    {}, {"scope": "items.read"}, {"scope": ["items.read"]}, {"scope": ""},
    {"rejected_token": API_KEY}, {"rejected_token": "x"}, {"scope": "items.read", "rejected_token": BASIC_PASSWORD},
]


def test_token_endpoint_refuses_static_credentials(live):
    # One live govern for every vector (a server per case would cost CI minutes): 3 credentials x 7 bodies.
    token = live.govern_token(scope="orders.read items.read")
    for name in sorted(STATIC):
        for body in STATIC_BODIES:
            resp = _token(live, name, token, **body)
            assert resp.status_code == 400, (name, body, resp.text)
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            problem = resp.json()
            assert problem["code"] == "proxy_only_credential"
            assert problem["proxy"] == f"/api/v1/named-credentials/{name}/proxy/"
            assert "access_token" not in problem
            _assert_no_static_secret(resp)


@pytest.mark.parametrize("content_type,data", [
    ("application/x-www-form-urlencoded", "scope=items.read"),
    ("application/x-www-form-urlencoded", ""),
    ("text/plain", "anything"),
])
def test_token_endpoint_refuses_static_credentials_in_any_body_shape(live, content_type, data):
    token = live.govern_token(scope="items.read")
    for name in STATIC:
        resp = requests.post(f"{live.base}/api/v1/named-credentials/{name}/token", data=data, timeout=30,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        assert resp.status_code == 400 and resp.json()["code"] == "proxy_only_credential", resp.text
        _assert_no_static_secret(resp)


def test_static_refusal_is_a_logged_decision_and_never_named_to_an_ungranted_caller(live):
    token = live.govern_token(scope="orders.read")  # jwt-sync has no grant on stock-*: it learns nothing
    other = live.govern_token(user="order-sync", scope="items.read")
    assert _token(live, "stock-api", other).json()["code"] == "proxy_only_credential"
    jwt_token = _jwt_sync_token(live)
    denied = _token(live, "stock-api", jwt_token)
    assert denied.status_code == 403 and denied.json()["code"] != "proxy_only_credential", denied.text
    rules = [(d.named_credential, d.allowed, list(d.rules)) for d in live.decisions() if d.action == "token"]
    assert ("stock-api", False, ["deny:static_credential_proxy_only"]) in rules
    assert token


def _jwt_sync_token(live) -> str:
    from govern.client import GovernTokens

    return GovernTokens(live.base, "jwt-sync", private_key=live.user_private_pem, scopes=["orders.read"]).govern_token()


def test_govern_auth_refuses_static_credentials_and_points_to_the_proxy_session(live):
    for name in sorted(STATIC):
        auth = GovernAuth(live.base, "order-sync", client_secret=USER_SECRET, named_credential=name,
                          scopes=["items.read"])
        with pytest.raises(ProxyOnlyCredentialError) as raised:
            requests.get(live.resources.url + "/v1/items/1", auth=auth, timeout=10)
        assert "GovernProxySession" in str(raised.value)
        for value in STATIC.values():
            assert value not in str(raised.value)
        session = GovernProxySession(live.base, "order-sync", client_secret=USER_SECRET, named_credential=name,
                                     scopes=["items.read"])
        assert session.get("/v1/items/1").status_code == 200


# --- scopes only narrow ----------------------------------------------------------------------------------

def test_positive_control_granted_scope_is_what_the_upstream_token_holds(live):
    token = live.govern_token(scope="orders.read")
    resp = _token(live, "shop-orders", token)
    assert resp.status_code == 200 and resp.json()["scope"] == "orders.read", resp.text
    seen = requests.get(live.upstream.url + "/api/whoami", timeout=10,
                        headers={"Authorization": "Bearer " + resp.json()["access_token"]}).json()
    assert seen["scope"] == "orders.read"


WIDENING = [
    ("orders.write", {}, "deny:no_grantable_scope"),                     # the reported escalation
    ("orders.write", {"scope": "orders.write"}, "deny:scope_outside_grant"),
    ("orders.write", {"scope": "admin.write"}, "deny:scope_outside_grant"),
    ("orders.read", {"scope": "admin.write"}, "deny:scope_outside_grant"),
    ("orders.read", {"scope": "orders.read admin.write"}, "deny:scope_outside_grant"),
    ("orders.read", {"scope": ["orders.read", "orders.write"]}, "deny:scope_outside_grant"),
    ("orders.read", {"scope": "orders.write"}, "deny:scope_outside_grant"),
    ("items.read", {}, "deny:no_grantable_scope"),
    ("items.read", {"scope": "orders.read"}, "deny:scope_outside_grant"),
    ("orders.write items.read", {}, "deny:no_grantable_scope"),
    ("orders.write items.read", {"scope": "orders.read"}, "deny:scope_outside_grant"),
]


def test_token_endpoint_never_widens_scopes(live):
    for govern_scope, body, rule in WIDENING:
        token = live.govern_token(scope=govern_scope)
        for name in ("shop-orders", "shop-user-orders", "shop-jwt-orders"):
            before = sum(live.upstream.counts.values())
            resp = _token(live, name, token, **body)
            assert resp.status_code == 403, (govern_scope, body, name, resp.text)
            assert resp.json()["rule"] == rule, (govern_scope, body, name)
            assert sum(live.upstream.counts.values()) == before  # nothing was asked of the upstream


def test_proxy_asks_the_upstream_only_for_the_granted_scopes(live):
    token = live.govern_token(scope="orders.read items.read")
    for name in ("shop-orders", "shop-user-orders", "shop-jwt-orders"):
        resp = live.proxy(token, name, "api/orders")
        assert resp.status_code == 200, (name, resp.text)
        assert resp.json()["scope"] == "orders.read"  # not the credential's "orders.read orders.write admin.write"
    for govern_scope in ("orders.write", "items.read", "orders.write items.read"):  # no granted scope held
        token = live.govern_token(scope=govern_scope)
        for name in ("shop-orders", "shop-user-orders", "shop-jwt-orders"):
            before = sum(live.upstream.counts.values())
            resp = live.proxy(token, name, "api/orders")
            assert resp.status_code == 403, (govern_scope, name, resp.text)
            assert resp.json()["rule"] == "deny:no_grantable_scope"
            assert sum(live.upstream.counts.values()) == before


def test_scopes_taken_from_the_user_after_the_token_was_issued_are_no_longer_granted(live, tmp_path):
    import time

    token = live.govern_token(scope="orders.read")
    assert _token(live, "shop-orders", token).status_code == 200
    path = tmp_path / "narrowed.yaml"
    text = (tmp_path / "governance.yaml").read_text().replace(
        "    scopes: [orders.read, orders.write, items.read]\n", "    scopes: [orders.write, items.read]\n", 1)
    path.write_text(text)
    result = live.runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 30  # the landscape snapshot is re-checked every few seconds
    while True:
        resp = _token(live, "shop-orders", token)
        if resp.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp.status_code == 403 and resp.json()["rule"] == "deny:no_grantable_scope", resp.text
