"""Fixtures for the broker's authorization side: an injected clock, a fake secret store and a fake
upstream token source (the real one belongs to govern.broker's upstream half)."""
from __future__ import annotations

import base64
import datetime as dt
import threading

import pytest

from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from tests.factories import make_landscape
from tests.fakes.secret_store import MemorySecretStore

UPSTREAM_TOKEN = "upstream-access-token-canary-7f3a"


class FakeClock:
    def __init__(self):
        self._now = dt.datetime.now(dt.UTC)
        self._mono = 1000.0

    def now(self):
        return self._now

    def monotonic(self):
        return self._mono

    def advance(self, seconds: float):
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds


class FakeUpstreamTokens:
    """Implements govern.ports.UpstreamTokenSource; records every call."""

    def __init__(self, clock):
        self.clock = clock
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def get_token(self, named_credential, principal, scopes=(), *, force_refresh=False, rejected=None):
        with self.lock:
            self.calls.append((named_credential, principal, tuple(scopes)))
        return UpstreamToken(access_token=Secret(UPSTREAM_TOKEN), token_type="Bearer",
                             expires_at=self.clock.now() + dt.timedelta(hours=1), scopes=tuple(scopes),
                             extra={"upstream_status": 200, "refresh_token": "never-returned"})

    def invalidate(self, named_credential, principal, scopes=(), *, token=None):
        pass


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def broker_services(settings, clock):
    from govern.bootstrap import build_services

    svc = build_services(settings, clock=clock)
    svc.secret_store = MemorySecretStore()
    svc.upstream_tokens = FakeUpstreamTokens(clock)
    yield svc
    svc.close()


@pytest.fixture
def broker_client(broker_services):
    from govern.app import create_app

    return create_app({"TESTING": True}, services=broker_services).test_client()


@pytest.fixture
def landscape(broker_services):
    return make_landscape(broker_services)


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def issue(client, user="order-sync", secret="s3cret-client-secret-value", scope=None, remote="127.0.0.1"):
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    return client.post("/oauth/token", data=data, headers=basic(user, secret),
                       environ_base={"REMOTE_ADDR": remote})


def access_token(client, **kw) -> str:
    resp = issue(client, **kw)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["access_token"]


def ask(client, token, name="erp-api", scope=None, remote="127.0.0.1", headers=None):
    h = {"Authorization": f"Bearer {token}", **(headers or {})}
    body = {} if scope is None else {"scope": scope}
    return client.post(f"/api/v1/named-credentials/{name}/token", json=body, headers=h,
                       environ_base={"REMOTE_ADDR": remote})


def decisions(services, *, oauth: bool = False):
    """The broker's decision records; those of /oauth/token (action oauth_token) only with `oauth`."""
    import sqlalchemy as sa

    from govern.store.tables import Decision

    assert services.decision_log.flush()
    with services.sessions() as s:
        query = sa.select(Decision).order_by(Decision.id)
        if not oauth:
            query = query.where(Decision.action != "oauth_token")
        return s.execute(query).scalars().all()
