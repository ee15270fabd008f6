"""Issue #9 "Done when": govern started with its secret store (real OpenBao) stopped reports it on /readyz,
still serves cached upstream tokens, and answers a token it would have to fetch with a clean 503."""
from __future__ import annotations

import dataclasses

import pytest

from tests.broker.conftest import access_token, ask
from tests.broker_upstream.conftest import wire_credential
from tests.factories import update_entity

pytestmark = [pytest.mark.vault, pytest.mark.redis]


def _govern(settings):
    from govern.app import create_app
    from govern.bootstrap import build_services

    services = build_services(settings)
    return services, create_app({"TESTING": True}, services=services).test_client()


def test_vault_down_serves_cached_tokens_and_refuses_refreshes_cleanly(settings, openbao_private, redis_url,
                                                                       redis_prefix, fake_upstream):
    vault_settings = dataclasses.replace(settings, secret_store="vault", vault_addr=openbao_private.addr,
                                         vault_token=openbao_private.token, redis_url=redis_url,
                                         redis_prefix=redis_prefix)
    # A first instance, with the vault up: the landscape, the client secret in the vault, one token cached.
    first, client = _govern(vault_settings)
    try:
        names = wire_credential(first, fake_upstream, scopes=("orders.read", "orders.write"))
        update_entity(first, "named_credentials", "erp-api", methods=["GET"])  # two scopes: one stays uncached
        caller = access_token(client, user=names["user"], secret=names["client_secret"])
        cached = ask(client, caller, scope="orders.read")
        assert cached.status_code == 200, cached.get_json()
        cached_token = cached.get_json()["access_token"]
    finally:
        first.close()
    fetched = fake_upstream.count("client_credentials")

    openbao_private.stop()
    services, client = _govern(vault_settings)  # a new process's view: nothing in memory, Redis shared
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json() == {"status": "degraded",
                                    "checks": {"database": "ok", "cache": "ok", "policies": "ok",
                                               "secret_store": "unavailable"}}

        again = ask(client, caller, scope="orders.read")
        assert again.status_code == 200, again.get_json()
        assert again.get_json()["access_token"] == cached_token
        # Its decision is on record, keyed: the chain key comes from the shared cache, sealed (issue #16).
        assert services.decision_log.verify().intact

        refresh = ask(client, caller, scope="orders.write")
        assert refresh.status_code == 503
        assert refresh.mimetype == "application/problem+json"
        problem = refresh.get_json()
        assert problem["status"] == 503 and problem["code"] == "secret_store_unavailable"
        assert openbao_private.addr not in refresh.get_data(as_text=True)
        assert fake_upstream.count("client_credentials") == fetched  # nothing reached the upstream
    finally:
        services.close()
