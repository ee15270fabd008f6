"""A govern instance built the way `govern serve` builds it, with a landscape that only ever comes from
governance.yaml (the apply service the CLI and `POST /api/v1/apply` use) and secrets set through the service
behind `govern secrets put`. Calls go over HTTP (the Flask test client) to the fake upstream OAuth server and
the fake resource server. The clock is injected: tests move time, they never sleep.

`base_document()` is a small landscape as a Python mapping; a test changes what it is about and applies it.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.fakes.oauth_server import FakeUpstream
from tests.fakes.resource_server import ResourceServer
from tests.proxy.fakes import FakeClock

USER = "order-sync"
USER_SECRET = "world-order-sync-client-secret"
CLIENT_ID = "shop-client"
CLIENT_SECRET = "world-shop-client-secret"
API_KEY = "world-stock-api-key"
# A Saturday, 12:00 UTC: the example's Salesforce window is Saturday 22:00-24:00.
SATURDAY_NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def base_document(upstream: FakeUpstream, resources: ResourceServer) -> dict[str, Any]:
    return {
        "apiVersion": "govern/v1", "kind": "Landscape",
        "systems": [
            {"id": "shop", "kind": "erp", "scopes": ["orders.read", "orders.write"]},
            {"id": "stock", "kind": "inventory", "scopes": ["items.read"]},
        ],
        "credentials": [
            {"id": "shop-cc", "system": "shop", "protocol": "oauth2_client_credentials",
             "token_url": upstream.token_url, "client_id": CLIENT_ID, "client_auth": "client_secret_basic",
             "scopes": ["orders.read"], "principals": [{"name": "default"}]},
            {"id": "stock-key", "system": "stock", "protocol": "api_key_header", "header": "X-Api-Key",
             "principals": [{"name": "default"}]},
        ],
        "named_credentials": [
            {"id": "shop-orders", "credential": "shop-cc", "url": resources.url + "/shop",
             "methods": ["GET", "POST"], "paths": ["/**"]},
            {"id": "stock-api", "credential": "stock-key", "url": resources.url + "/stock",
             "methods": ["GET", "POST", "PUT"], "paths": ["/**"]},
        ],
        "integration_users": [
            {"id": USER, "owner": "shop-team@example.com", "justification": "Syncs orders for the tests.",
             "review_date": "2099-01-01", "ip_ranges": ["127.0.0.0/8"], "scopes": ["orders.read", "items.read"],
             "permission_sets": ["shop-reader"]},
        ],
        "permission_sets": [
            {"id": "shop-reader", "scopes": ["orders.read", "items.read"], "api_types": ["REST"],
             "max_token_lifetime": "15m",
             "grants": [
                 {"named_credential": "shop-orders", "principal": "default", "methods": ["GET", "POST"],
                  "paths": ["/**"]},
                 {"named_credential": "stock-api", "principal": "default", "methods": ["GET", "POST", "PUT"],
                  "paths": ["/**"]},
             ]},
        ],
    }


def find(doc: dict, section: str, ext_id: str) -> dict:
    return next(item for item in doc[section] if item["id"] == ext_id)


@dataclass
class World:
    services: Any
    client: Any
    clock: FakeClock
    upstream: FakeUpstream
    resources: ResourceServer
    doc: dict
    sleeps: list = field(default_factory=list)
    _token: tuple[str, dt.datetime] | None = None

    # --- the user's path -----------------------------------------------------------------------------
    def apply(self, doc: dict | None = None):
        """Apply governance.yaml text through the apply service; this process's snapshot sees it at once (the
        apply moved the stored landscape version in its transaction)."""
        from govern.landscape import apply_document

        text = yaml.safe_dump(doc or self.doc, sort_keys=False)
        plan = apply_document(self.services.sessions, text, "governance.yaml")
        return plan

    def apply_errors(self, doc: dict) -> str:
        from govern.errors import ValidationFailed
        from govern.landscape import apply_document

        try:
            apply_document(self.services.sessions, yaml.safe_dump(doc, sort_keys=False), "governance.yaml")
        except ValidationFailed as exc:
            return exc.detail
        raise AssertionError("apply accepted the document")

    def put_secret(self, credential: str, field: str, value: str, principal: str | None = None) -> None:
        from govern.secrets.service import secret_service

        secret_service(self.services).put_for_credential(credential, field, value, principal=principal)

    def put_user_secret(self, user: str, value: str) -> None:
        from govern.secrets.service import secret_service

        secret_service(self.services).put_for_user(user, "client_secret", value)

    # --- HTTP --------------------------------------------------------------------------------------
    def govern_token(self) -> str:
        """A govern access token for the integration user, fetched again when the clock moved past its life."""
        if self._token is None or abs((self.clock.now() - self._token[1]).total_seconds()) > 300:
            r = self.client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                       "scope": "orders.read items.read"},
                                 headers={"Authorization": _basic(USER, USER_SECRET)})
            assert r.status_code == 200, r.get_data(as_text=True)
            self._token = (r.get_json()["access_token"], self.clock.now())
        return self._token[0]

    def proxy(self, name: str, path: str, method: str = "GET", **kw):
        headers = {"Authorization": f"Bearer {self.govern_token()}", **kw.pop("headers", {})}
        return self.client.open(f"/api/v1/named-credentials/{name}/proxy/{path}", method=method, headers=headers, **kw)

    def upstream_token(self, name: str = "shop-orders", scope: str = "orders.read"):
        return self.client.post(f"/api/v1/named-credentials/{name}/token", json={"scope": scope},
                                headers={"Authorization": f"Bearer {self.govern_token()}"})

    def decisions(self):
        import sqlalchemy as sa

        from govern.store.tables import Decision

        assert self.services.decision_log.flush()
        with self.services.sessions() as s:
            return s.execute(sa.select(Decision).order_by(Decision.id)).scalars().all()


def _basic(user: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def build_world(settings, upstream: FakeUpstream, resources: ResourceServer, *, now: dt.datetime = SATURDAY_NOON,
                doc: dict | None = None, cache=None) -> World:
    """Services and app as `govern serve` wires them (only the clock is a fake), the base landscape applied and
    its secrets stored. `cache`: the shared cache, when a test needs another than the in-process one."""
    from govern.app import create_app
    from govern.bootstrap import build_services

    from govern.cache import MemoryCache

    clock = FakeClock(now)
    # The in-process cache (one process, as `govern serve` without Redis) on the same injected clock, so that
    # cache lifetimes (breaker windows, cached tokens) move with the test's time.
    services = build_services(settings, clock=clock, cache=cache or MemoryCache(clock=clock.monotonic))
    proxy = services.proxy
    world = World(services, create_app({"TESTING": True}, services=services).test_client(), clock, upstream,
                  resources, copy.deepcopy(doc) if doc else base_document(upstream, resources))
    proxy.sleep = world.sleeps.append  # backoff waits are recorded, not slept
    proxy.random = lambda: 1.0
    upstream.register_client(CLIENT_ID, secret=CLIENT_SECRET, scope="orders.read orders.write")
    world.apply()
    world.put_user_secret(USER, USER_SECRET)
    world.put_secret("shop-cc", "client_secret", CLIENT_SECRET)
    world.put_secret("stock-key", "api_key", API_KEY)
    return world
