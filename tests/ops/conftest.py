"""Fixtures for the operations tests: the real app (real authenticator, decider, decision log, upstream token
source, proxy) with an in-memory secret store, a credential wired to the fake OAuth upstream and its named
credential pointed at the fake resource server."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from govern.store.db import session_scope
from govern.store.tables import NamedCredential
from tests.broker_upstream.conftest import wire_credential
from tests.fakes.resource_server import ResourceServer
from tests.fakes.secret_store import MemorySecretStore


@dataclass
class OpsEnv:
    services: object
    client: object
    names: dict
    upstream: object  # tests.fakes.oauth_server.FakeUpstream
    resources: ResourceServer

    def scrape(self) -> str:
        return self.client.get("/metrics").get_data(as_text=True)


@pytest.fixture
def resources():
    server = ResourceServer().start()
    yield server
    server.stop()


@pytest.fixture
def ops_env(settings, fake_upstream, resources):
    from govern.app import create_app
    from govern.bootstrap import build_services

    services = build_services(settings)
    services.secret_store = MemorySecretStore()
    names = wire_credential(services, fake_upstream)
    with session_scope(services.sessions) as s:
        nc = s.execute(sa.select(NamedCredential).where(
            NamedCredential.external_id == names["named_credential"])).scalar_one()
        nc.url = resources.url + "/api"
        nc.retry = {"attempts": 1}
        nc.circuit_breaker = {"failures": 2, "reset": 300}
    services.extras["proxy"].sleep = lambda seconds: None
    app = create_app({"TESTING": True}, services=services)
    yield OpsEnv(services, app.test_client(), names, fake_upstream, resources)
    services.close()
