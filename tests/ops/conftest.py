"""Fixtures for the operations tests: the real app (real authenticator, decider, decision log, upstream token
source, proxy) with an in-memory secret store, a credential wired to the fake OAuth upstream and its named
credential pointed at the fake resource server."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.broker_upstream.conftest import wire_credential
from tests.factories import update_entity
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
def ops_env(settings, fake_upstream, resources):
    from govern.app import create_app
    from govern.bootstrap import build_services

    services = build_services(settings)
    services.secret_store = MemorySecretStore()
    names = wire_credential(services, fake_upstream)
    update_entity(services, "named_credentials", names["named_credential"], url=resources.url + "/api",
                  retry={"attempts": 1}, circuit_breaker={"failures": 2, "reset": 300})
    services.proxy.sleep = lambda seconds: None
    app = create_app({"TESTING": True}, services=services)
    yield OpsEnv(services, app.test_client(), names, fake_upstream, resources)
    services.close()
