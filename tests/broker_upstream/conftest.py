"""Fixtures for the upstream broker: services with a controllable clock and an in-memory secret store
(tests/fakes/secret_store.py; the real local/Vault stores belong to the secrets package and are not in this
tree), and a credential wired to the fake upstream."""
from __future__ import annotations

import datetime as dt

import pytest

from govern.broker.upstream.secret_refs import CredentialSecrets

from govern.store.credential_secret_refs import CredentialSecretRefRepo
from govern.domain.secret import Secret
from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, NamedCredential, Principal
from tests.factories import make_landscape
from tests.fakes.secret_store import MemorySecretStore


class FakeClock:
    def __init__(self):
        self.offset = 0.0
        self._base = dt.datetime.now(dt.UTC)
        import time

        self._mono = time.monotonic

    def now(self):
        return self._base + dt.timedelta(seconds=self.offset + self._mono() - self._start)

    def monotonic(self):
        return self._mono() + self.offset

    def advance(self, seconds: float):
        self.offset += seconds

    def __post_init__(self):
        pass


@pytest.fixture
def clock():
    c = FakeClock()
    c._start = c._mono()
    return c


@pytest.fixture
def broker_services(settings, clock):
    from govern.bootstrap import build_services

    svc = build_services(settings, clock=clock)
    svc.secret_store = MemorySecretStore()
    yield svc
    svc.close()


def put_secret(services, credential, principal, field, value) -> int:
    secrets = CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock)
    current = secrets.current(credential, principal, field)
    return secrets.replace(credential, principal, field, Secret(value), expected_version=current.version if current else None)


def wire_credential(services, upstream, *, protocol="oauth2_client_credentials", auth="client_secret_basic",
                    client_id="erp-client", secret="upstream-client-secret", principal="default", subject=None,
                    principal_type="named", scopes=("orders.read",), timeout=5.0, user="order-sync",
                    public_jwk=None, private_key=None, audience=None):
    """The landscape from tests.factories, pointed at the fake upstream, with its client registered there."""
    names = make_landscape(services.sessions, token_url=upstream.token_url, url=upstream.url + "/api",
                           client_id=client_id, protocol=protocol, principal=principal, principal_type=principal_type,
                           ps_scopes=scopes, user=user)
    with session_scope(services.sessions) as s:
        import sqlalchemy as sa

        cred = s.execute(sa.select(ExternalCredential).where(ExternalCredential.external_id == names["credential"])).scalar_one()
        cred.client_auth_method = auth
        cred.audience = audience
        nc = s.execute(sa.select(NamedCredential).where(NamedCredential.external_id == names["named_credential"])).scalar_one()
        nc.timeout_seconds = timeout
        prin = s.execute(sa.select(Principal).where(Principal.credential_id == cred.id)).scalar_one()
        prin.subject = subject
    upstream.register_client(client_id, secret=secret if auth != "private_key_jwt" else None, auth_method=auth,
                             public_jwk=public_jwk, redirect_uris=["http://127.0.0.1/oauth/callback"],
                             scope=" ".join(scopes))
    if auth == "private_key_jwt":
        put_secret(services, names["credential"], None, "private_key", private_key)
    elif secret:
        put_secret(services, names["credential"], None, "client_secret", secret)
    return names
