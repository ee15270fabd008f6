"""Fixtures for the proxy: a fault-injecting upstream, services with fakes for the broker seams and a
controllable clock, and a small landscape pointing at the upstream."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from govern.config_as_code.schema import OAUTH2, Contract, CredentialDoc, NamedCredentialDoc
from tests.factories import change_landscape, entity, make_landscape, put_credential_secret
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

    def configure(self, *, named_credential="erp-api", **changes) -> None:
        """Set governance.yaml keys of the named credential, its credential or its system's `contract`, and
        apply the edited landscape (a key set to None is removed, so it takes its default)."""

        def edit(document: dict) -> None:
            nc = entity(document, "named_credentials", named_credential)
            cred = entity(document, "credentials", nc["credential"])
            contract = entity(document, "systems", cred["system"]).setdefault("contract", {})
            for key, value in changes.items():
                target = next(t for t, model in ((nc, NamedCredentialDoc), (cred, CredentialDoc), (contract, Contract))
                              if key in model.model_fields)
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value
            if cred["protocol"] not in OAUTH2:  # what the schema allows only on OAuth 2.0 credentials
                for key in ("token_url", "authorize_url", "client_id", "client_auth", "audience"):
                    cred.pop(key, None)

        change_landscape(self.services, edit)

    def put_secret(self, credential: str, principal: str | None, field: str, value: str) -> None:
        """`govern secrets put CREDENTIAL --field FIELD [--principal P]`."""
        put_credential_secret(self.services, credential, field, value, principal=principal)


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
    make_landscape(environment.services, url=upstream.url + "/api", methods=("GET", "POST", "PUT", "PATCH",
                                                                                       "DELETE"))
    environment.configure(retry={"attempts": 3, "backoff": 0.1, "max_backoff": 1}, timeout=2.0)
    yield environment
    environment.services.close()


def use_api_key(env: Env) -> None:
    env.configure(protocol="api_key_header", header="X-Api-Key")
    env.put_secret("erp-cc", "default", "api_key", API_KEY)


@pytest.fixture
def admin_token_for():
    def make(env: Env) -> str:
        from govern.store.admins import create_admin, issue_token

        create_admin(env.services.sessions, "ops-admin", "correct horse battery staple", "admin")
        return issue_token(env.services.sessions, "ops-admin")

    return make
