"""Fixtures for the proxy: a fault-injecting upstream, services with fakes for the broker seams and a
controllable clock, and a small landscape pointing at the upstream."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel import select

from govern.domain.secret import Secret
from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, NamedCredential, SecretRef, System
from tests.factories import make_landscape
from tests.fakes.resource_server import ResourceServer
from tests.fakes.secret_store import MemorySecretStore
from tests.proxy.fakes import (FakeAuthenticator, FakeClock, FakeDecider, FakeDecisionLog, FakeTokenSource,
                               RecordingNotifier)

CALLER = {"Authorization": "Bearer caller-order-sync"}
API_KEY = "canary-api-key-7f3e9a"


@pytest.fixture
def upstream():
    server = ResourceServer().start()
    yield server
    server.stop()


@dataclass
class Env:
    services: object
    client: object
    upstream: ResourceServer
    clock: FakeClock
    decider: FakeDecider
    log: FakeDecisionLog
    tokens: FakeTokenSource
    store: MemorySecretStore
    notifier: RecordingNotifier
    sleeps: list

    @property
    def proxy(self):
        return self.services.proxy

    def url(self, path: str, name: str = "erp-api") -> str:
        return f"/api/v1/named-credentials/{name}/proxy/{path}"

    def configure(self, *, named_credential="erp-api", system="erp", **changes) -> None:
        """Change the named credential / system / credential rows, and drop the proxy's config cache."""
        nc_fields = {k: v for k, v in changes.items() if hasattr(NamedCredential, k)}
        sys_fields = {k: v for k, v in changes.items() if hasattr(System, k) and k not in nc_fields}
        cred_fields = {k: v for k, v in changes.items() if hasattr(ExternalCredential, k)
                       and k not in nc_fields and k not in sys_fields}
        with session_scope(self.services.sessions) as s:
            nc = s.exec(select(NamedCredential).where(NamedCredential.external_id == named_credential)).one()
            for k, v in nc_fields.items():
                setattr(nc, k, v)
            cred = s.get(ExternalCredential, nc.credential_id)
            for k, v in cred_fields.items():
                setattr(cred, k, v)
            sys_row = s.get(System, cred.system_id)
            for k, v in sys_fields.items():
                setattr(sys_row, k, v)

    def put_secret(self, credential: str, principal: str | None, field: str, value: str) -> None:
        from govern.secrets.service import secret_ref_name

        ext = secret_ref_name("credential", credential, principal, field)
        path = f"govern/{ext}"
        self.store.put(path, Secret(value))
        with session_scope(self.services.sessions) as s:
            s.add(SecretRef(external_id=ext, owner_kind="credential", owner=credential, principal=principal,
                            field=field, path=path))


def build_env(settings, upstream, *, cache=None) -> Env:
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.broker.proxy import build_proxy

    clock = FakeClock()
    overrides = {"cache": cache} if cache is not None else {}
    services = build_services(settings, clock=clock, **overrides)
    services.authenticator = FakeAuthenticator()
    services.decider = decider = FakeDecider()
    services.decision_log = log = FakeDecisionLog()
    services.upstream_tokens = tokens = FakeTokenSource()
    services.secret_store = store = MemorySecretStore()
    notifier = RecordingNotifier()
    # The proxy takes its collaborators when it is built: build it again with the fakes set above.
    services.proxy = proxy = build_proxy(services)
    sleeps: list = []
    proxy.sleep = sleeps.append
    proxy.random = lambda: 1.0  # the largest full-jitter wait, so tests can compute it
    proxy.budget.notifier = notifier
    proxy.budget.background = False
    proxy.idempotency.wait = 0.0
    app = create_app({"TESTING": True}, services=services)
    return Env(services, app.test_client(), upstream, clock, decider, log, tokens, store, notifier, sleeps)


@pytest.fixture
def env(settings, upstream):
    environment = build_env(settings, upstream)
    make_landscape(environment.services.sessions, url=upstream.url + "/api", methods=("GET", "POST", "PUT", "PATCH",
                                                                                       "DELETE"))
    environment.configure(retry={"attempts": 3, "backoff": 0.1, "max_backoff": 1},
                          timeout_seconds=2.0)
    yield environment
    environment.services.close()


def use_api_key(env: Env) -> None:
    env.configure(protocol="api_key_header", header_name="X-Api-Key")
    env.put_secret("erp-cc", "default", "api_key", API_KEY)


@pytest.fixture
def admin_token_for():
    def make(env: Env) -> str:
        from govern.store.admins import create_admin, issue_token

        create_admin(env.services.sessions, "ops-admin", "correct horse battery staple", "admin")
        return issue_token(env.services.sessions, "ops-admin")

    return make
