"""The snapshot's rows are typed on load (govern.store.landscape_snapshot): a stored JSON value that does not parse
is an error for the entity that holds it, reported in the log and raised to that entity's calls, never a
default, and it does not break the rest of the landscape.

The landscape comes from governance.yaml through the apply service (tests/config_as_code/world.py); the only
way a stored value can be unreadable is a row changed behind govern's back, so each test does that with SQL, in
this process (its next request sees it), then calls over HTTP.
"""
from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, NamedCredential, PermissionGrant, System
from tests.config_as_code.world import build_world


@pytest.fixture
def world(settings, fake_upstream):
    from tests.fakes.resource_server import ResourceServer

    resources = ResourceServer().start()
    built = build_world(settings, fake_upstream, resources)
    yield built
    built.services.close()
    resources.stop()


def _change(world, table, where, **values) -> None:
    with session_scope(world.services.sessions) as s:
        s.execute(sa.update(table).where(where).values(**values))


def _configuration_error(response, *names: str) -> None:
    assert response.status_code == 500, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == "configuration_error", body
    for name in names:
        assert name in body["detail"], body["detail"]


def _logged(caplog, entity: str, entity_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "govern.broker.landscape" and r.levelno == logging.ERROR
            and getattr(r, "entity", None) == entity and getattr(r, "entity_id", None) == entity_id]


def test_a_named_credentials_unreadable_retry_fails_its_calls_only(world, caplog):
    caplog.set_level(logging.ERROR, logger="govern.broker.landscape")
    _change(world, NamedCredential, NamedCredential.external_id == "stock-api", retry={"attempts": "many"})
    _configuration_error(world.proxy("stock-api", "items/1"), "named credential stock-api: retry", "attempts")
    assert world.resources.count == 0  # not called with a default retry policy
    assert world.upstream_token("shop-orders").status_code == 200  # the rest of the landscape still works
    assert world.proxy("shop-orders", "orders/1").status_code == 200
    [record] = _logged(caplog, "named_credential", "stock-api")
    assert "retry" in record.error


def test_a_systems_unreadable_maintenance_windows_fail_its_named_credentials(world, caplog):
    caplog.set_level(logging.ERROR, logger="govern.broker.landscape")
    _change(world, System, System.external_id == "stock",
            maintenance_windows=[{"day": "someday", "start": "02:00", "end": "04:00"}])
    _configuration_error(world.proxy("stock-api", "items/1"), "system stock: maintenance_windows")
    assert world.resources.count == 0
    assert world.proxy("shop-orders", "orders/1").status_code == 200
    assert _logged(caplog, "system", "stock")


def test_a_credentials_unreadable_token_parameters_fail_its_token_requests(world, caplog):
    caplog.set_level(logging.ERROR, logger="govern.broker.landscape")
    _change(world, ExternalCredential, ExternalCredential.external_id == "shop-cc", token_params={"tenant": ["a", "b"]})
    before = world.upstream.count()
    _configuration_error(world.upstream_token("shop-orders"), "credential shop-cc: token_params")
    _configuration_error(world.proxy("shop-orders", "orders/1"), "credential shop-cc")
    assert world.upstream.count() == before  # no token request with parameters govern could not read
    assert world.proxy("stock-api", "items/1").status_code == 200
    assert _logged(caplog, "credential", "shop-cc")


def test_a_grants_unreadable_object_permissions_fail_the_assigned_users_calls(world, caplog):
    caplog.set_level(logging.ERROR, logger="govern.broker.landscape")
    token = world.govern_token()  # issued before the row is changed: still valid, and now refused loudly
    with session_scope(world.services.sessions) as s:
        grant_id = s.execute(sa.select(PermissionGrant.id).join(
            NamedCredential, NamedCredential.id == PermissionGrant.named_credential_id).where(
            NamedCredential.external_id == "stock-api")).scalar_one()
    _change(world, PermissionGrant, PermissionGrant.id == grant_id, objects={"Account": {"read": "perhaps"}})
    for response in (world.proxy("stock-api", "items/1"), world.proxy("shop-orders", "orders/1"),
                     world.upstream_token("shop-orders")):
        _configuration_error(response, "permission set shop-reader: grant: objects")
    assert world.resources.count == 0
    assert world.govern_token() == token
    assert _logged(caplog, "permission_set", "shop-reader")


def test_applying_again_repairs_the_row_and_its_calls(world):
    _change(world, NamedCredential, NamedCredential.external_id == "stock-api", circuit_breaker={"failures": 0})
    _configuration_error(world.proxy("stock-api", "items/1"), "named credential stock-api: circuit_breaker")
    world.doc["named_credentials"][1]["circuit_breaker"] = {"failures": 3}
    world.apply()
    assert world.proxy("stock-api", "items/1").status_code == 200
