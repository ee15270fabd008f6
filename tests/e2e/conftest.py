"""The whole path over real HTTP, wired by bootstrap the way `govern serve` wires it (no fakes for govern's
own services): the landscape comes from `govern apply` (YAML), the secret values from `govern secrets put`,
and the only fakes are the systems govern brokers for (the authlib upstream, the resource server).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from tests.fakes.oauth_server import FakeUpstream, rsa_keypair
from tests.fakes.resource_server import ResourceServer

USER_SECRET = "e2e-order-sync-client-secret"
SHOP_CLIENT_SECRET = "e2e-shop-client-secret"
RT_CLIENT_SECRET = "e2e-shop-rt-client-secret"
API_KEY = "e2e-stock-api-key-value"
BASIC_PASSWORD = "e2e-stock-basic-password"

LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: shop, name: Shop, kind: erp, scopes: [orders.read, orders.write]}}
  - {{id: stock, name: Stock, kind: inventory, scopes: [items.read]}}
credentials:
  - id: shop-cc
    system: shop
    protocol: oauth2_client_credentials
    token_url: {token_url}
    client_id: shop-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: default}}]
  - id: shop-rt
    system: shop
    protocol: oauth2_refresh_token
    token_url: {token_url}
    authorize_url: {authorize_url}
    client_id: shop-rt-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: alice, subject: alice}}]
  - id: shop-jwt
    system: shop
    protocol: oauth2_jwt_bearer
    token_url: {token_url}
    client_id: shop-jwt-client
    scopes: [orders.read]
    principals: [{{name: bob, subject: bob@shop}}]
  - id: stock-key
    system: stock
    protocol: api_key_header
    header: X-Api-Key
    principals: [{{name: default}}]
  - id: stock-basic
    system: stock
    protocol: basic
    principals: [{{name: svc, subject: svc-user}}]
named_credentials:
  - {{id: shop-orders, credential: shop-cc, url: "{upstream_url}", methods: [GET], paths: ["/api/**"]}}
  - {{id: shop-user-orders, credential: shop-rt, url: "{upstream_url}", methods: [GET], paths: ["/api/**"]}}
  - {{id: shop-jwt-orders, credential: shop-jwt, url: "{upstream_url}", methods: [GET], paths: ["/api/**"]}}
  - {{id: stock-api, credential: stock-key, url: "{resource_url}", methods: [GET, POST], paths: ["/v1/**"],
      retry: {{attempts: 1}}}}
  - {{id: stock-legacy, credential: stock-basic, url: "{resource_url}", methods: [GET], paths: ["/v1/**"]}}
integration_users:
  - id: order-sync
    name: Order sync
    owner: shop-team@example.com
    justification: Reads orders and stock for the end-to-end tests.
    review_date: 2099-01-01
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read, items.read]
    permission_sets: [shop-reader, stock-reader]
  - id: jwt-sync
    name: JWT sync
    owner: shop-team@example.com
    justification: Authenticates with private_key_jwt.
    review_date: 2099-01-01
    auth: private_key_jwt
    jwks: {{keys: [{jwk}]}}
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read]
    permission_sets: [shop-reader]
permission_sets:
  - id: shop-reader
    scopes: [orders.read]
    api_types: [REST]
    max_token_lifetime: 15m
    grants:
      - {{named_credential: shop-orders, principal: default, methods: [GET], paths: ["/api/orders"]}}
      - {{named_credential: shop-user-orders, principal: alice, methods: [GET], paths: ["/api/orders"]}}
      - {{named_credential: shop-jwt-orders, principal: bob, methods: [GET], paths: ["/api/orders"]}}
  - id: stock-reader
    scopes: [items.read]
    api_types: [REST]
    grants:
      - {{named_credential: stock-api, principal: default, methods: [GET], paths: ["/v1/items/**"]}}
      - {{named_credential: stock-legacy, principal: svc, methods: [GET], paths: ["/v1/items/**"]}}
"""


@dataclass
class Live:
    base: str
    services: object
    upstream: FakeUpstream
    resources: ResourceServer
    runner: object
    user_private_pem: str
    refresh_token: str
    extra: dict = field(default_factory=dict)

    def govern_token(self, user: str = "order-sync", secret: str = USER_SECRET, scope: str = "orders.read") -> str:
        resp = requests.post(self.base + "/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                             auth=(user, secret), timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    def upstream_token(self, govern_token: str, name: str, scope: str = "orders.read") -> requests.Response:
        return requests.post(f"{self.base}/api/v1/named-credentials/{name}/token", json={"scope": scope},
                             headers={"Authorization": f"Bearer {govern_token}"}, timeout=30)

    def proxy(self, govern_token: str, name: str, path: str, method: str = "GET", **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/api/v1/named-credentials/{name}/proxy/{path}",
                                headers={"Authorization": f"Bearer {govern_token}", **kw.pop("headers", {})},
                                timeout=30, **kw)

    def decisions(self, *, oauth: bool = False):
        """The broker's decision records; those of /oauth/token (action oauth_token) only with `oauth`."""
        import sqlalchemy as sa

        from govern.store.tables import Decision

        assert self.services.decision_log.flush()
        with self.services.sessions() as s:
            query = sa.select(Decision).order_by(Decision.id)
            if not oauth:
                query = query.where(Decision.action != "oauth_token")
            return s.execute(query).scalars().all()


def put_secret(runner, args: list[str], value: str) -> None:
    result = runner.invoke(["secrets", "put", *args], input=value)
    assert result.exit_code == 0, result.output


def apply_landscape(runner, tmp_path: Path, upstream, resources, public_jwk: dict) -> None:
    import json

    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE.format(token_url=upstream.token_url, authorize_url=upstream.authorize_url,
                                     upstream_url=upstream.url, resource_url=resources.url, jwk=json.dumps(public_jwk)))
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output


def serve(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def seed_upstream(upstream: FakeUpstream) -> tuple[str, str]:
    """Register govern's clients at the fake upstream; return (alice's refresh token, bob's private key)."""
    upstream.register_client("shop-client", secret=SHOP_CLIENT_SECRET, scope="orders.read")
    upstream.register_client("shop-rt-client", secret=RT_CLIENT_SECRET, scope="orders.read",
                             redirect_uris=["http://127.0.0.1/oauth/callback"])
    upstream.register_client("shop-jwt-client", scope="orders.read")
    bob_pem, bob_jwk = rsa_keypair()
    upstream.register_user_key("bob@shop", bob_jwk)
    return upstream.issue_refresh_token("shop-rt-client", user="alice", scope="orders.read"), bob_pem


def store_secrets(runner, refresh_token: str, bob_pem: str) -> None:
    put_secret(runner, ["--user", "order-sync", "--field", "client_secret"], USER_SECRET)
    put_secret(runner, ["shop-cc", "--field", "client_secret"], SHOP_CLIENT_SECRET)
    put_secret(runner, ["shop-rt", "--field", "client_secret"], RT_CLIENT_SECRET)
    put_secret(runner, ["shop-rt", "--principal", "alice", "--field", "refresh_token"], refresh_token)
    put_secret(runner, ["shop-jwt", "--principal", "bob", "--field", "private_key"], bob_pem)
    put_secret(runner, ["stock-key", "--field", "api_key"], API_KEY)
    put_secret(runner, ["stock-basic", "--principal", "svc", "--field", "password"], BASIC_PASSWORD)


@pytest.fixture
def resources():
    server = ResourceServer().start()
    yield server
    server.stop()


def start_live(tmp_path, settings, runner, upstream, resources, monkeypatch, **overrides):
    """Apply, store the secrets through the CLI, then build and serve govern as `govern serve` does.
    `overrides` (Settings fields) apply to the CLI (through GOVERN_* variables) and the server alike."""
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import _ENV_NAMES

    for name, value in overrides.items():
        monkeypatch.setenv(_ENV_NAMES[name], str(value))
    user_pem, user_jwk = rsa_keypair()
    refresh_token, bob_pem = seed_upstream(upstream)
    apply_landscape(runner, tmp_path, upstream, resources, user_jwk)
    store_secrets(runner, refresh_token, bob_pem)
    # The port is known once bound; govern's public URL (the assertion audience) is that address.
    holder = {}
    base, server = serve(lambda environ, start_response: holder["app"](environ, start_response))
    services = build_services(settings.with_overrides(public_url=base, **overrides))
    holder["app"] = create_app({}, services=services)
    return Live(base, services, upstream, resources, runner, user_pem, refresh_token, extra={"server": server, "app": holder["app"]})


def stop_live(live: Live) -> None:
    live.extra["server"].shutdown()
    live.services.close()


@pytest.fixture
def live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch):
    """govern as `govern serve` builds it (build_services + create_app), on a real port."""
    started = start_live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch)
    yield started
    stop_live(started)


@pytest.fixture
def live_redis(tmp_path, settings, runner, fake_upstream, resources, monkeypatch, redis_url, redis_prefix):
    """The same with Redis as the shared cache (what the CLI and the server must share for `connect`)."""
    import redis

    started = start_live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch,
                         redis_url=redis_url, redis_prefix=redis_prefix)
    yield started
    stop_live(started)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=redis_prefix + "*"):
        client.delete(key)


@pytest.fixture
def live_vault(tmp_path, settings, runner, fake_upstream, resources, monkeypatch, openbao_private):
    """The same with OpenBao (a private dev server that tests may stop and restart) as the secret store, its
    transit engine mounted, so cached upstream tokens are sealed by Vault (the production set-up)."""
    openbao_private.client().sys.enable_secrets_engine("transit", path="transit")
    started = start_live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch, secret_store="vault",
                         vault_addr=openbao_private.addr, vault_token=openbao_private.token)
    started.extra["openbao"] = openbao_private
    yield started
    stop_live(started)
