"""Every field of the governance.yaml schema, and how its effect is seen over HTTP after applying it (#15).

The schema is walked (pydantic models, nested ones included); each leaf field needs a row here:
- `Effect`: apply a document that sets the field, then observe the difference over HTTP (the proxy, the token
  endpoints, /oauth/token, the fake upstream OAuth server's and resource server's records);
- `Shown`: a descriptive field whose only effect is to be recorded and shown: applied, then read back from the
  management API (`GET /api/v1/{resource}/{id}`), which the console and `govern export` show too;
A schema field without a row fails `test_every_schema_field_has_a_row`.
"""
from __future__ import annotations

import datetime as dt
import typing
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from govern.config_as_code import schema as s
from tests.config_as_code import test_access_conditions as cond
from tests.config_as_code.world import API_KEY, CLIENT_ID, USER, find


@dataclass(frozen=True)
class Effect:
    observe: Callable[[Any], None]


@dataclass(frozen=True)
class Shown:
    set: Callable[[dict], None]  # change the document
    resource: str  # management API collection
    ext_id: str
    read: Callable[[dict], Any]  # the value read back
    expected: Any


# --- walking the schema --------------------------------------------------------------------------------

def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def schema_fields() -> set[str]:
    paths: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            nested = _models_in(info.annotation)
            if nested:
                for sub in nested:
                    walk(sub, f"{prefix}.{name}")
            else:
                paths.add(f"{prefix}.{name}")

    for section, model in s.SECTIONS.items():
        walk(model, section)
    return paths | {key for key in s.TOP_LEVEL if key not in s.SECTIONS}


# --- helpers for the observations ---------------------------------------------------------------------

def _nc(world, name="stock-api"):
    return find(world.doc, "named_credentials", name)


def _cred(world, name="shop-cc"):
    return find(world.doc, "credentials", name)


def _grant(world, index=1):
    return find(world.doc, "permission_sets", "shop-reader")["grants"][index]


def _pset(world):
    return find(world.doc, "permission_sets", "shop-reader")


def _user(world):
    return find(world.doc, "integration_users", USER)


def _system(world, name="stock"):
    return find(world.doc, "systems", name)


def _status(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    if code:
        assert response.get_json()["code"] == code, response.get_json()


def _govern_token_status(world, scope="orders.read"):
    from tests.config_as_code.world import USER_SECRET, _basic

    return world.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                             headers={"Authorization": _basic(USER, USER_SECRET)})


def _admin(world) -> dict:
    from govern.store.admins import create_admin, issue_token

    create_admin(world.services.sessions, "table-admin", "correct horse battery staple", "admin")
    return {"Authorization": f"Bearer {issue_token(world.services.sessions, 'table-admin')}"}


def _salesforce(world):
    """stock-api pointing at a Salesforce-shaped base path, its grant with object permissions."""
    _nc(world)["url"] = world.resources.url + "/services/data/v61.0"
    _grant(world)["methods"] = ["GET", "POST", "PUT"]


# --- the observations -------------------------------------------------------------------------------------

def obs_system_id(world):
    # Breakers, budgets and maintenance are per system: the circuit of `stock` opens, `shop` stays closed.
    _nc(world)["retry"] = {"attempts": 1}
    _nc(world)["circuit_breaker"] = {"failures": 1}
    world.apply()
    world.resources.fail_next(1)
    world.proxy("stock-api", "items/1")
    _status(world.proxy("stock-api", "items/1"), 503, "circuit_open")
    assert world.proxy("stock-api", "items/1").get_json()["system"] == "stock"
    _status(world.proxy("shop-orders", "orders"), 200)


def obs_daily_budget(world):
    _system(world)["contract"] = {"daily_api_budget": 1}
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 200)
    _status(world.proxy("stock-api", "items/1"), 429, "budget_exhausted")


def obs_rate_limit_per_minute(world):
    _system(world)["contract"] = {"rate_limit_per_minute": 2}
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 200)
    _status(world.proxy("stock-api", "items/1"), 200)
    refused = world.proxy("stock-api", "items/1")
    _status(refused, 429, "system_rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def obs_max_concurrent_calls(world):
    # The bulkhead: with one slot taken by a slow call, the next call to the system is refused.
    import threading
    import time

    _system(world)["contract"] = {"max_concurrent_calls": 1}
    world.apply()
    world.resources.slow_next(1, delay=30.0)
    token = world.govern_token()
    done = []
    slow = threading.Thread(target=lambda: done.append(world.client.application.test_client().get(
        "/api/v1/named-credentials/stock-api/proxy/items/1", headers={"Authorization": f"Bearer {token}"}).status_code))
    slow.start()
    deadline = time.monotonic() + 30
    while world.resources.count < 1:
        assert time.monotonic() < deadline, "the slow call never reached the system"
        time.sleep(0.02)
    _status(world.proxy("stock-api", "items/1"), 503, "upstream_concurrency_limit")
    world.resources.release_slow()
    slow.join(30)
    assert done == [200]


def obs_maintenance(world):
    _system(world)["contract"] = {"maintenance_windows": [{"day": "sat", "start": "11:00", "end": "24:00"}]}
    world.apply()
    r = world.proxy("stock-api", "items/1")
    _status(r, 503, "maintenance_window")
    midnight = world.clock.now().replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
    assert r.headers["Retry-After"] == str(int((midnight - world.clock.now()).total_seconds()))


def obs_system_scopes(world):
    _cred(world)["scopes"] = ["orders.read", "not.offered"]
    assert "not.offered" in world.apply_errors(world.doc)


def obs_credential_system(world):
    # The credential's system decides whose budget a call spends.
    _system(world, "shop")["contract"] = {"daily_api_budget": 1}
    world.apply()
    _status(world.proxy("shop-orders", "orders"), 200)
    _status(world.proxy("shop-orders", "orders"), 429, "budget_exhausted")
    _status(world.proxy("stock-api", "items/1"), 200)


def obs_protocol_and_header(world):
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.resources.last().headers["X-Api-Key"] == API_KEY
    _cred(world, "stock-key")["header"] = "X-Other-Key"
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.resources.last().headers["X-Other-Key"] == API_KEY


def obs_token_url(world):
    _status(world.upstream_token(), 200)
    assert world.upstream.count("client_credentials") == 1
    _cred(world)["token_url"] = world.resources.url + "/not-a-token-endpoint"
    world.apply()
    _status(world.upstream_token("shop-orders", "orders.read"), 200)  # still cached
    world.clock.advance(3600)
    assert world.upstream_token().status_code >= 500 and world.upstream.count("client_credentials") == 1


def obs_client_id(world):
    _cred(world)["client_id"] = "someone-else"
    world.apply()
    _status(world.upstream_token(), 502, "upstream_invalid_client")


def obs_client_auth(world):
    world.upstream.register_client(CLIENT_ID, secret="world-shop-client-secret", auth_method="client_secret_post",
                                   scope="orders.read orders.write")
    _status(world.upstream_token(), 502, "upstream_invalid_client")  # basic, refused by a post-only client
    _cred(world)["client_auth"] = "client_secret_post"
    world.apply()
    _status(world.upstream_token(), 200)
    assert world.upstream.forms[-1]["client_id"] == [CLIENT_ID]


def obs_credential_scopes(world):
    """At apply, a credential's scopes must be declared by its system. At runtime they bound what govern asks of
    the upstream (scopes only narrow): the caller's grant is "items.read orders.read", the credential declares
    orders.read and orders.admin, so the proxy asks for orders.read alone."""
    _cred(world)["scopes"] = ["orders.read", "orders.admin"]
    assert "orders.admin" in world.apply_errors(world.doc)
    _system(world, "shop")["scopes"].append("orders.admin")
    world.apply()
    _status(world.proxy("shop-orders", "orders"), 200)
    assert world.upstream.forms[-1]["scope"] == ["orders.read"]


def obs_audience(world):
    _cred(world)["audience"] = "https://api.shop.example"
    world.apply()
    _status(world.upstream_token(), 200)
    assert world.upstream.forms[-1]["audience"] == ["https://api.shop.example"]


def obs_resource(world):
    _cred(world)["resource"] = ["https://a.example/", "https://b.example/"]
    world.apply()
    _status(world.upstream_token(), 200)
    assert world.upstream.forms[-1]["resource"] == ["https://a.example/", "https://b.example/"]


def obs_token_params(world):
    _cred(world)["token_params"] = {"tenant": "acme"}
    world.apply()
    _status(world.upstream_token(), 200)
    assert world.upstream.forms[-1]["tenant"] == ["acme"]


def obs_leeway(world):
    world.upstream.client_ttls[CLIENT_ID] = 60
    _cred(world)["leeway"] = "50s"
    world.apply()
    _status(world.upstream_token(), 200)
    world.clock.advance(11)
    _status(world.upstream_token(), 200)
    assert world.upstream.count("client_credentials") == 2  # default leeway (6 s) would have served it


def obs_principals(world):
    # Grants name principals: one the credential does not have is refused at apply.
    _cred(world, "stock-key")["principals"] = [{"name": "other"}]
    assert "has no principal 'default'" in world.apply_errors(world.doc)


def obs_rotation_overlap(world):
    _cred(world)["rotation"] = {"every": "90d", "overlap": "24h"}
    world.apply()
    world.put_secret("shop-cc", "client_secret", "a-wrong-new-secret")
    _status(world.upstream_token(), 200)  # the previous secret, within the overlap
    world.clock.advance(25 * 3600)
    _status(world.upstream_token(), 502, "upstream_invalid_client")


def obs_authorize_url(world):
    doc = world.doc
    doc["credentials"].append({"id": "shop-rt", "system": "shop", "protocol": "oauth2_refresh_token",
                               "token_url": world.upstream.token_url, "authorize_url": world.upstream.authorize_url,
                               "client_id": CLIENT_ID, "principals": [{"name": "alice", "subject": "alice"}]})
    world.apply()
    r = world.client.post("/api/v1/credentials/shop-rt/principals/alice/connect", headers=_admin(world),
                          json={"redirect_uri": "http://127.0.0.1/oauth/callback"})
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    assert world.upstream.authorize_url in r.get_data(as_text=True)


def obs_nc_credential(world):
    _nc(world, "shop-orders")["credential"] = "stock-key"
    world.apply()
    _status(world.proxy("shop-orders", "orders"), 200)
    assert world.resources.last().headers["X-Api-Key"] == API_KEY


def obs_url(world):
    _nc(world)["url"] = world.resources.url + "/elsewhere"
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.resources.last().path == "/elsewhere/items/1"


def obs_api_type(world):
    _nc(world)["api_type"] = "Bulk"
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "access_denied")  # the permission set allows REST only


def obs_timeout(world):
    _nc(world)["timeout"] = "300ms"
    _nc(world)["retry"] = {"attempts": 1}
    world.apply()
    world.resources.slow_next(1, delay=5.0)
    _status(world.proxy("stock-api", "items/1"), 504, "upstream_timeout")


def obs_attempts(world):
    _nc(world)["retry"] = {"attempts": 1}
    world.apply()
    world.resources.fail_next(1)
    world.proxy("stock-api", "items/1")
    assert world.resources.count == 1


def obs_backoff(world):
    _nc(world)["retry"] = {"attempts": 2, "backoff": "700ms"}
    world.apply()
    world.resources.fail_next(1)
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.sleeps == [0.7]


def obs_max_backoff(world):
    _nc(world)["retry"] = {"attempts": 3, "backoff": "1s", "max_backoff": "1500ms"}
    world.apply()
    world.resources.fail_next(2)
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.sleeps == [1.0, 1.5]


def obs_max_retry_after(world):
    _nc(world)["retry"] = {"max_retry_after": "2s"}
    world.apply()
    world.resources.rate_limit_next(1, retry_after="3")
    r = world.proxy("stock-api", "items/1")
    _status(r, 429, "upstream_rate_limited")
    assert r.headers["Retry-After"] == "3" and world.sleeps == []
    _nc(world)["retry"] = {}
    world.apply()
    world.resources.rate_limit_next(1, retry_after="3")
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.sleeps == [3.0]


def obs_redirects(world):
    _nc(world)["retry"] = {"redirects": 1}
    world.apply()
    world.resources.redirect_next(world.resources.url + "/stock/items/2")
    _status(world.proxy("stock-api", "items/1"), 200)
    assert world.resources.last().path == "/stock/items/2"


def obs_breaker_failures(world):
    _nc(world)["retry"] = {"attempts": 1}
    _nc(world)["circuit_breaker"] = {"failures": 2}
    world.apply()
    world.resources.fail_next(2)
    world.proxy("stock-api", "items/1")
    world.proxy("stock-api", "items/1")
    _status(world.proxy("stock-api", "items/1"), 503, "circuit_open")


def obs_breaker_reset(world):
    _nc(world)["retry"] = {"attempts": 1}
    _nc(world)["circuit_breaker"] = {"failures": 1, "reset": "2m"}
    world.apply()
    world.resources.fail_next(1)
    world.proxy("stock-api", "items/1")
    assert world.proxy("stock-api", "items/1").headers["Retry-After"] == "120"
    world.clock.advance(121)
    _status(world.proxy("stock-api", "items/1"), 200)


def obs_nc_methods(world):
    _nc(world)["methods"] = ["POST"]
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "named_credential_forbids")


def obs_nc_paths(world):
    _nc(world)["paths"] = ["/orders/**"]
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "named_credential_forbids")


def obs_during_maintenance(world):
    _system(world)["contract"] = {"maintenance_windows": [{"day": "sat", "start": "11:00", "end": "13:00"}]}
    _nc(world)["during_maintenance"] = "queue"
    world.apply()
    r = world.proxy("stock-api", "items", "PUT", data=b"{}", headers={"Content-Type": "application/json",
                                                                     "Idempotency-Key": "k-1"})
    assert r.status_code == 202, r.get_data(as_text=True)
    assert world.resources.count == 0


def obs_max_body(world):
    _nc(world)["max_body"] = "1KB"
    world.apply()
    _status(world.proxy("stock-api", "items", "POST", data=b"x" * 2048, headers={"Content-Type": "text/plain"}), 413)


def obs_user_status(world):
    _user(world)["status"] = "suspended"
    world.apply()
    assert _govern_token_status(world).status_code in (400, 401)


def obs_ip_ranges(world):
    _status(_govern_token_status(world), 200)
    _user(world)["ip_ranges"] = ["10.0.0.0/8"]
    world.apply()
    r = _govern_token_status(world)
    # One answer for every refusal, the address one included (docs/security.md "Client authentication").
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"


def obs_user_scopes(world):
    _user(world)["scopes"] = ["items.read"]
    world.apply()
    assert _govern_token_status(world, "orders.read").status_code == 400  # invalid_scope


def obs_assignment(world):
    _user(world)["permission_sets"] = []
    world.apply()
    _status(world.upstream_token(), 403, "access_denied")


def obs_assignment_until(world):
    _user(world)["permission_sets"] = [{"permission_set": "shop-reader", "until": "2026-11-27"}]
    world.apply()
    _status(world.upstream_token(), 403, "access_denied")  # the clock says 2026-11-28


def obs_pset_scopes(world):
    _pset(world)["scopes"] = ["items.read"]
    world.apply()
    _status(world.upstream_token(scope="orders.read"), 403, "access_denied")


def obs_api_types(world):
    _pset(world)["api_types"] = ["Bulk"]
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "access_denied")


def obs_max_token_lifetime(world):
    _pset(world)["max_token_lifetime"] = "5m"
    world.apply()
    r = _govern_token_status(world)
    assert r.status_code == 200 and r.get_json()["expires_in"] == 300


def obs_overdraft(world):
    _system(world)["contract"] = {"daily_api_budget": 1}
    _pset(world)["overdraft"] = True
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 200)
    _status(world.proxy("stock-api", "items/1"), 200)


def obs_system_permissions(world):
    _pset(world)["system_permissions"] = ["ModifyAllData"]
    world.apply()
    r = world.upstream_token()
    _status(r, 403, "access_denied")
    assert r.get_json()["rule"].startswith("forbid:")


def obs_grant_named_credential(world):
    _pset(world)["grants"] = [_grant(world, 0)]
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "access_denied")


def obs_grant_principal(world):
    _grant(world)["principal"] = "nobody"
    assert "has no principal 'nobody'" in world.apply_errors(world.doc)


def obs_grant_methods(world):
    _grant(world)["methods"] = ["POST"]
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "access_denied")


def obs_grant_paths(world):
    _grant(world)["paths"] = ["/orders/**"]
    world.apply()
    _status(world.proxy("stock-api", "items/1"), 403, "access_denied")


def _objects(world, perms: dict):
    _salesforce(world)
    _grant(world)["objects"] = {"Account": perms}
    world.apply()


def obs_objects_read(world):
    _objects(world, {"create": True})
    _status(world.proxy("stock-api", "sobjects/Account/001"), 403, "access_denied")
    _objects(world, {"read": True})
    _status(world.proxy("stock-api", "sobjects/Account/001"), 200)


def _write(world, method="POST", body=b'{"Name": "A"}'):
    return world.proxy("stock-api", "sobjects/Account" + ("/001" if method != "POST" else ""), method, data=body,
                       headers={"Content-Type": "application/json"})


def obs_objects_create(world):
    _objects(world, {"read": True, "fields": {"Name": "edit"}})
    _status(_write(world), 403, "access_denied")
    _objects(world, {"read": True, "create": True, "fields": {"Name": "edit"}})
    _status(_write(world), 201)


def obs_objects_edit(world):
    _objects(world, {"read": True, "fields": {"Name": "edit"}})
    _status(_write(world, "PUT"), 403, "access_denied")
    _objects(world, {"edit": True, "fields": {"Name": "edit"}})
    _status(_write(world, "PUT"), 200)


def obs_objects_delete(world):
    _grant(world)["methods"] = ["GET", "DELETE"]
    _nc(world)["methods"] = ["GET", "DELETE"]
    _objects(world, {"read": True})
    _grant(world)["methods"] = ["GET", "DELETE"]
    world.apply()
    _status(world.proxy("stock-api", "sobjects/Account/001", "DELETE"), 403, "access_denied")
    _grant(world)["objects"] = {"Account": {"delete": True}}
    world.apply()
    _status(world.proxy("stock-api", "sobjects/Account/001", "DELETE"), 200)


def obs_objects_view_all(world):
    _objects(world, {"view_all": True})
    _status(world.proxy("stock-api", "sobjects/Account/001"), 200)
    _status(_write(world, "PUT", b"{}"), 403, "access_denied")


def obs_objects_modify_all(world):
    _objects(world, {"modify_all": True})
    _status(_write(world, "PUT", b"{}"), 200)


def obs_objects_fields(world):
    _objects(world, {"read": True, "edit": True, "fields": {"Name": "read"}})
    _status(_write(world, "PUT"), 403, "access_denied")
    _objects(world, {"read": True, "edit": True, "fields": {"Name": "edit"}})
    _status(_write(world, "PUT"), 200)


def obs_user_id(world):
    # The integration user's id is its govern client id.
    _status(_govern_token_status(world), 200)


def obs_permission_set_id(world):
    _user(world)["permission_sets"] = ["missing-set"]
    assert "missing-set" in world.apply_errors(world.doc)


def obs_nc_id(world):
    _status(world.proxy("stock-api", "items/1"), 200)
    _status(world.proxy("no-such-nc", "items/1"), 404)


def obs_credential_id(world):
    _nc(world)["credential"] = "no-such-credential"
    assert "no-such-credential" in world.apply_errors(world.doc)


def obs_api_version_of_document(world):
    world.doc["apiVersion"] = "govern/v2"
    assert "apiVersion must be 'govern/v1'" in world.apply_errors(world.doc)


def obs_kind_of_document(world):
    world.doc["kind"] = "Something"
    assert "kind must be 'Landscape'" in world.apply_errors(world.doc)


def obs_breaker_window(world):
    _nc(world)["retry"] = {"attempts": 1}
    _nc(world)["circuit_breaker"] = {"failures": 2, "window": "10s"}
    world.apply()
    world.resources.fail_next(3)
    world.proxy("stock-api", "items/1")
    world.clock.advance(11)  # the first failure has left the window
    world.proxy("stock-api", "items/1")
    _status(world.proxy("stock-api", "items/1"), 503)  # the third failure reached the upstream: still closed
    assert world.resources.count == 3
    _status(world.proxy("stock-api", "items/1"), 503, "circuit_open")  # two failures within 10 s


def obs_principal_subject(world):
    import base64

    world.doc["credentials"].append({"id": "stock-basic", "system": "stock", "protocol": "basic",
                                     "principals": [{"name": "svc", "subject": "svc-user"}]})
    world.doc["named_credentials"].append({"id": "stock-legacy", "credential": "stock-basic",
                                           "url": world.resources.url + "/legacy"})
    _pset(world)["grants"].append({"named_credential": "stock-legacy", "principal": "svc", "methods": ["GET"],
                                   "paths": ["/**"]})
    world.apply()
    world.put_secret("stock-basic", "password", "legacy-password", principal="svc")
    _status(world.proxy("stock-legacy", "items/1"), 200)
    sent = world.resources.last().headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"svc-user:legacy-password").decode()


def obs_per_user_principals(world):
    """A per_user credential resolves the calling integration user to its own upstream identity."""
    from tests.config_as_code.world import CLIENT_SECRET

    world.doc["credentials"].append({"id": "shop-rt", "system": "shop", "protocol": "oauth2_refresh_token",
                                     "token_url": world.upstream.token_url, "client_id": CLIENT_ID,
                                     "scopes": ["orders.read"], "principal_type": "per_user",
                                     "principals": [{"name": "u-sync", "subject": "carol", "user": USER}]})
    world.doc["named_credentials"].append({"id": "shop-user-orders", "credential": "shop-rt",
                                           "url": world.resources.url + "/shop"})
    _pset(world)["grants"].append({"named_credential": "shop-user-orders", "methods": ["GET"], "paths": ["/**"]})
    world.apply()
    world.put_secret("shop-rt", "client_secret", CLIENT_SECRET)
    world.put_secret("shop-rt", "refresh_token", world.upstream.issue_refresh_token(CLIENT_ID, user="carol"),
                     principal="u-sync")
    r = world.upstream_token("shop-user-orders")
    _status(r, 200)
    assert world.upstream.access_tokens[r.get_json()["access_token"]].user == "carol"
    assert world.upstream.count("refresh_token") == 1


def obs_private_key_jwt_user(world):
    """auth: private_key_jwt with jwks: govern's /oauth/token accepts the user's signed assertion (RFC 7523
    section 2.2) and only a key from its jwks."""
    import uuid

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from tests.fakes.oauth_server import rsa_keypair

    pem, public = rsa_keypair()
    other_pem, _ = rsa_keypair()
    world.doc["integration_users"].append({"id": "jwt-sync", "owner": "o@example.com", "justification": "j",
                                           "review_date": "2099-01-01", "auth": "private_key_jwt",
                                           "jwks": {"keys": [public]}, "ip_ranges": ["127.0.0.0/8"],
                                           "scopes": ["orders.read"], "permission_sets": ["shop-reader"]})
    world.apply()

    def token(key_pem):
        import time

        now = int(time.time())  # authlib checks the assertion's exp against the wall clock, not govern's clock
        audience = world.services.settings.public_url.rstrip("/") + "/oauth/token"  # govern's one public URL
        claims = {"iss": "jwt-sync", "sub": "jwt-sync", "aud": audience, "iat": now,
                  "exp": now + 60, "jti": uuid.uuid4().hex}
        assertion = jwt.encode({"alg": "RS256", "kid": public.get("kid")} if public.get("kid") else {"alg": "RS256"},
                               claims, RSAKey.import_key(key_pem))
        return world.client.post("/oauth/token", data={
            "grant_type": "client_credentials", "scope": "orders.read", "client_id": "jwt-sync",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})

    r = token(pem)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert token(other_pem).status_code in (400, 401)


def _federated(world, observe, **trust):
    """A federated user (trust: with a real local issuer, tests/fakes/oidc_issuer.py), applied; `observe(post,
    mint)` then sees the trust at /oauth/token. docs/federation.md; tests/broker/test_federation.py goes further."""
    from tests.fakes.oidc_issuer import OidcIssuer

    issuer = OidcIssuer().start()
    try:
        base = {"issuers": [{"issuer": issuer.url, "jwks_url": issuer.jwks_url}], "subject": "wl:shop",
                "claims": {"env": "prod"}}
        base.update({k: v(issuer) if callable(v) else v for k, v in trust.items()})
        world.doc["integration_users"].append({"id": "wl-sync", "owner": "o@example.com", "justification": "j",
                                               "review_date": "2099-01-01", "trust": base,
                                               "ip_ranges": ["127.0.0.0/8"], "scopes": ["orders.read"],
                                               "permission_sets": ["shop-reader"]})
        world.apply()
        audience = world.services.settings.public_endpoint("/oauth/token")

        def mint(sub="wl:shop", aud=audience, **kw):
            kw.setdefault("claims", {"env": "prod"})
            return issuer.mint(sub, aud, now=world.clock.now().timestamp(), **kw)

        def post(assertion):
            return world.client.post("/oauth/token", data={
                "grant_type": "client_credentials", "client_id": "wl-sync", "client_assertion": assertion,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}).status_code

        observe(post, mint, issuer)
    finally:
        issuer.stop()


def obs_trust_issuer(world):
    """trust.issuers.issuer and jwks_url: a token of that issuer, verified with keys fetched from that URL."""
    def observe(post, mint, issuer):
        assert post(mint()) == 200 and issuer.jwks_requests == 1
        assert post(mint(iss="https://another-issuer.example.com")) == 401
    _federated(world, observe)


def obs_trust_inline_jwks(world):
    def observe(post, mint, issuer):
        assert post(mint()) == 200 and issuer.jwks_requests == 0
    _federated(world, observe, issuers=lambda i: [{"issuer": i.url, "jwks": i.jwks()}])


def obs_trust_algorithms(world):
    """Only the listed algorithms: an issuer trusted with ES256 only cannot use its RS256 key."""
    def observe(post, mint, issuer):
        assert post(mint()) == 401
    _federated(world, observe, issuers=lambda i: [{"issuer": i.url, "jwks_url": i.jwks_url, "algorithms": ["ES256"]}])


def obs_trust_subject(world):
    def observe(post, mint, issuer):
        assert post(mint()) == 200
        assert post(mint(sub="wl:other")) == 401
    _federated(world, observe)


def obs_trust_claims(world):
    def observe(post, mint, issuer):
        assert post(mint(claims={"env": "dev"})) == 401
        assert post(mint()) == 200
    _federated(world, observe)


def obs_trust_max_token_age(world):
    def observe(post, mint, issuer):
        now = world.clock.now().timestamp()
        assert post(mint(iat=now - 200, lifetime=600)) == 401  # older than 2m (+ 60 s leeway)
        assert post(mint(iat=now - 100, lifetime=600)) == 200
    _federated(world, observe, max_token_age="2m")


def obs_trust_audience(world):
    def observe(post, mint, issuer):
        assert post(mint()) == 401  # minted for the token URL, the default no longer trusted
        assert post(mint(aud="govern-ci")) == 200
    _federated(world, observe, audience="govern-ci")


def obs_user_rotation_overlap(world):
    """After `govern rotate` of the user's client secret, the previous secret still gets govern tokens for the
    overlap the file names (2h here; the default is 24h), then never again."""
    import random

    from govern.rotation.wiring import rotation_service
    from tests.config_as_code.world import USER_SECRET, _basic

    def token_status(secret: str) -> int:
        return world.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                                 headers={"Authorization": _basic(USER, secret)}).status_code

    ref = f"integration_user/{USER}/client_secret"
    _user(world)["rotation"] = {"every": "90d", "overlap": "2h"}
    world.apply()
    rotation = rotation_service(world.services, rng=random.Random(7))
    outcome = rotation.rotate(rotation.find_ref(ref).id, force=True)  # govern rotate REF --commit
    assert not outcome.failed, outcome.as_dict()
    new_secret = world.services.secret_store.get(ref).reveal()  # what the integration is handed next
    assert new_secret != USER_SECRET
    assert (token_status(USER_SECRET), token_status(new_secret)) == (200, 200)
    world.clock.advance(90 * 60)
    assert token_status(USER_SECRET) == 200  # inside the 2h overlap
    world.clock.advance(31 * 60)
    assert (token_status(USER_SECRET), token_status(new_secret)) == (401, 200)


def _expiry_days(world, kind: str, credential: str) -> float:
    """The `govern_expiry_days` gauge of one item, scraped from /metrics (docs/expiry.md)."""
    import re

    text = world.client.get("/metrics").get_data(as_text=True)
    found = re.findall(rf'^govern_expiry_days{{credential="{credential}",kind="{kind}",subject="[^"]*"}} (\S+)$',
                       text, re.M)
    assert len(found) == 1, text
    return float(found[0])


def obs_client_secret_expires(world):
    _cred(world)["client_secret_expires"] = "2026-12-28"  # valid through that day: 30.5 days from Saturday noon
    world.apply()
    assert _expiry_days(world, "client_secret", "shop-cc") == 30.5


def _refresh_token_credential(world, **lifetimes):
    world.doc["credentials"].append({"id": "shop-rt", "system": "shop", "protocol": "oauth2_refresh_token",
                                     "token_url": world.upstream.token_url, "client_id": CLIENT_ID,
                                     "scopes": ["orders.read"], "principal_type": "per_user",
                                     "principals": [{"name": "u-sync", "subject": "carol", "user": USER}],
                                     **lifetimes})
    world.doc["named_credentials"].append({"id": "shop-user-orders", "credential": "shop-rt",
                                           "url": world.resources.url + "/shop"})
    _pset(world)["grants"].append({"named_credential": "shop-user-orders", "methods": ["GET"], "paths": ["/**"]})
    world.apply()
    world.put_secret("shop-rt", "client_secret", "world-shop-client-secret")
    world.put_secret("shop-rt", "refresh_token", world.upstream.issue_refresh_token(CLIENT_ID, user="carol"),
                     principal="u-sync")


def obs_refresh_token_lifetime(world):
    """The absolute lifetime counts from when govern stored the refresh token."""
    _refresh_token_credential(world, refresh_token_lifetime="90d")
    assert _expiry_days(world, "refresh_token", "shop-rt") == 90
    world.clock.advance(10 * 86400)
    assert _expiry_days(world, "refresh_token", "shop-rt") == 80


def obs_refresh_token_idle(world):
    """The idle lifetime counts from the token's last use: a refresh through govern starts it again."""
    _refresh_token_credential(world, refresh_token_idle="30d")
    assert _expiry_days(world, "refresh_token", "shop-rt") == 30
    world.clock.advance(10 * 86400)
    assert _expiry_days(world, "refresh_token", "shop-rt") == 20
    _status(world.upstream_token("shop-user-orders"), 200)
    assert world.upstream.count("refresh_token") == 1
    assert _expiry_days(world, "refresh_token", "shop-rt") == 30


# --- the table -------------------------------------------------------------------------------------------

def _shown(section: str, ext: str, key: str, value: Any, read=None, resource=None, expected=None):
    def setter(doc, section=section, ext=ext, key=key, value=value):
        item = find(doc, section, ext)
        parts = key.split(".")
        for part in parts[:-1]:
            item = item.setdefault(part, {})
        item[parts[-1]] = value

    return Shown(setter, resource or section.replace("_", "-"), ext,
                 read or (lambda body, key=key: body[key.split(".")[-1]]),
                 value if expected is None else expected)


ROWS: dict[str, Effect | Shown] = {
    "apiVersion": Effect(obs_api_version_of_document),
    "kind": Effect(obs_kind_of_document),
    # systems
    "systems.id": Effect(obs_system_id),
    "systems.name": _shown("systems", "stock", "name", "Stock service"),
    "systems.kind": _shown("systems", "stock", "kind", "warehouse"),
    "systems.description": _shown("systems", "stock", "description", "Items in stock."),
    "systems.scopes": Effect(obs_system_scopes),
    "systems.contract.owner": _shown("systems", "stock", "contract.owner", "stock-team@example.com"),
    "systems.contract.escalation": _shown("systems", "stock", "contract.escalation", "oncall@example.com"),
    "systems.contract.sla": _shown("systems", "stock", "contract.sla", {"uptime": "99.9%"}),
    "systems.contract.rate_limit_per_minute": Effect(obs_rate_limit_per_minute),
    "systems.contract.daily_api_budget": Effect(obs_daily_budget),
    "systems.contract.max_concurrent_calls": Effect(obs_max_concurrent_calls),
    "systems.contract.api_version_policy": _shown("systems", "stock", "contract.api_version_policy", "pinned"),
    "systems.contract.maintenance_windows.day": Effect(obs_maintenance),
    "systems.contract.maintenance_windows.start": Effect(obs_maintenance),
    "systems.contract.maintenance_windows.end": Effect(obs_maintenance),
    "systems.contract.runbook": _shown("systems", "stock", "contract.runbook", "https://runbooks.example/stock"),
    "systems.contract.schema_links": _shown("systems", "stock", "contract.schema_links", ["https://schemas.example/"]),
    "systems.contract.error_codes": _shown("systems", "stock", "contract.error_codes", {"429": "slow down"}),
    # credentials
    "credentials.id": Effect(obs_credential_id),
    "credentials.system": Effect(obs_credential_system),
    "credentials.protocol": Effect(obs_protocol_and_header),
    "credentials.token_url": Effect(obs_token_url),
    "credentials.authorize_url": Effect(obs_authorize_url),
    "credentials.client_id": Effect(obs_client_id),
    "credentials.client_auth": Effect(obs_client_auth),
    "credentials.scopes": Effect(obs_credential_scopes),
    "credentials.audience": Effect(obs_audience),
    "credentials.resource": Effect(obs_resource),
    "credentials.token_params": Effect(obs_token_params),
    "credentials.leeway": Effect(obs_leeway),
    "credentials.header": Effect(obs_protocol_and_header),
    "credentials.principal_type": Effect(obs_per_user_principals),
    "credentials.principals.name": Effect(obs_principals),
    "credentials.principals.subject": Effect(obs_principal_subject),
    "credentials.principals.user": Effect(obs_per_user_principals),
    # The effect (govern offboard revokes there, with that client authentication) is observed end to end in
    # tests/e2e/test_offboard_cli.py, against the fake provider's RFC 7009 endpoint.
    "credentials.revocation_endpoint": _shown("credentials", "shop-cc", "revocation_endpoint",
                                              "https://login.shop.example/oauth/revoke"),
    "credentials.revocation_client_auth": _shown("credentials", "shop-cc", "revocation_client_auth",
                                                 "client_secret_post"),
    "credentials.refresh_token_policy": _shown("credentials", "shop-cc", "refresh_token_policy", "expire_after_90d"),
    "credentials.rotation.every": _shown("credentials", "shop-cc", "rotation", {"every": "30d"},
                                         expected={"every": "30d"}),
    "credentials.rotation.cron": _shown("credentials", "shop-cc", "rotation", {"cron": "0 3 1 * *"},
                                        expected={"cron": "0 3 1 * *"}),
    "credentials.rotation.overlap": Effect(obs_rotation_overlap),
    "credentials.client_secret_expires": Effect(obs_client_secret_expires),
    "credentials.refresh_token_lifetime": Effect(obs_refresh_token_lifetime),
    "credentials.refresh_token_idle": Effect(obs_refresh_token_idle),
    # named credentials
    "named_credentials.id": Effect(obs_nc_id),
    "named_credentials.credential": Effect(obs_nc_credential),
    "named_credentials.url": Effect(obs_url),
    "named_credentials.api_version": _shown("named_credentials", "stock-api", "api_version", "v2"),
    "named_credentials.api_type": Effect(obs_api_type),
    "named_credentials.timeout": Effect(obs_timeout),
    "named_credentials.retry.attempts": Effect(obs_attempts),
    "named_credentials.retry.backoff": Effect(obs_backoff),
    "named_credentials.retry.max_backoff": Effect(obs_max_backoff),
    "named_credentials.retry.max_retry_after": Effect(obs_max_retry_after),
    "named_credentials.retry.redirects": Effect(obs_redirects),
    "named_credentials.circuit_breaker.failures": Effect(obs_breaker_failures),
    "named_credentials.circuit_breaker.reset": Effect(obs_breaker_reset),
    "named_credentials.circuit_breaker.window": Effect(obs_breaker_window),
    "named_credentials.methods": Effect(obs_nc_methods),
    "named_credentials.paths": Effect(obs_nc_paths),
    "named_credentials.during_maintenance": Effect(obs_during_maintenance),
    "named_credentials.max_body": Effect(obs_max_body),
    # integration users
    "integration_users.id": Effect(obs_user_id),
    "integration_users.name": _shown("integration_users", USER, "name", "Order sync"),
    "integration_users.owner": _shown("integration_users", USER, "owner", "someone@example.com"),
    "integration_users.justification": _shown("integration_users", USER, "justification", "Because."),
    "integration_users.status": Effect(obs_user_status),
    "integration_users.review_date": _shown("integration_users", USER, "review_date", "2099-06-30"),
    "integration_users.source_system": _shown("integration_users", USER, "source_system", "shop"),
    "integration_users.auth": Effect(obs_private_key_jwt_user),
    "integration_users.jwks": Effect(obs_private_key_jwt_user),
    "integration_users.ip_ranges": Effect(obs_ip_ranges),
    "integration_users.scopes": Effect(obs_user_scopes),
    "integration_users.permission_sets.permission_set": Effect(obs_assignment),
    "integration_users.permission_sets.until": Effect(obs_assignment_until),
    "integration_users.trust.issuers.issuer": Effect(obs_trust_issuer),
    "integration_users.trust.issuers.jwks_url": Effect(obs_trust_issuer),
    "integration_users.trust.issuers.jwks": Effect(obs_trust_inline_jwks),
    "integration_users.trust.issuers.algorithms": Effect(obs_trust_algorithms),
    "integration_users.trust.subject": Effect(obs_trust_subject),
    "integration_users.trust.claims": Effect(obs_trust_claims),
    "integration_users.trust.max_token_age": Effect(obs_trust_max_token_age),
    "integration_users.trust.audience": Effect(obs_trust_audience),
    "integration_users.rotation.every": _shown("integration_users", USER, "rotation", {"every": "30d"},
                                               expected={"every": "30d"}),
    "integration_users.rotation.cron": _shown("integration_users", USER, "rotation", {"cron": "0 3 1 * *"},
                                              expected={"cron": "0 3 1 * *"}),
    "integration_users.rotation.overlap": Effect(obs_user_rotation_overlap),
    # permission sets
    "permission_sets.id": Effect(obs_permission_set_id),
    "permission_sets.description": _shown("permission_sets", "shop-reader", "description", "Reads orders."),
    "permission_sets.scopes": Effect(obs_pset_scopes),
    "permission_sets.api_types": Effect(obs_api_types),
    "permission_sets.max_token_lifetime": Effect(obs_max_token_lifetime),
    "permission_sets.overdraft": Effect(obs_overdraft),
    "permission_sets.system_permissions": Effect(obs_system_permissions),
    "permission_sets.grants.named_credential": Effect(obs_grant_named_credential),
    "permission_sets.grants.principal": Effect(obs_grant_principal),
    "permission_sets.grants.methods": Effect(obs_grant_methods),
    "permission_sets.grants.paths": Effect(obs_grant_paths),
    "permission_sets.grants.objects.read": Effect(obs_objects_read),
    "permission_sets.grants.objects.create": Effect(obs_objects_create),
    "permission_sets.grants.objects.edit": Effect(obs_objects_edit),
    "permission_sets.grants.objects.delete": Effect(obs_objects_delete),
    "permission_sets.grants.objects.view_all": Effect(obs_objects_view_all),
    "permission_sets.grants.objects.modify_all": Effect(obs_objects_modify_all),
    "permission_sets.grants.objects.fields": Effect(obs_objects_fields),
    "permission_sets.conditions.time_windows.days": Effect(cond.obs_condition_days),
    "permission_sets.conditions.time_windows.start": Effect(cond.obs_condition_start),
    "permission_sets.conditions.time_windows.end": Effect(cond.obs_condition_end),
    "permission_sets.conditions.time_windows.time_zone": Effect(cond.obs_condition_time_zone),
    "permission_sets.conditions.max_requests_per_minute": Effect(cond.obs_condition_rate),
    "permission_sets.conditions.source_cidrs": Effect(cond.obs_condition_source),
}


def test_every_schema_field_has_a_row():
    fields = schema_fields()
    missing = sorted(fields - set(ROWS))
    stale = sorted(set(ROWS) - fields)
    assert not missing, f"schema fields without a row in ROWS: {missing}"
    assert not stale, f"rows for fields the schema no longer has: {stale}"


@pytest.mark.parametrize("path", sorted(p for p, r in ROWS.items() if isinstance(r, Effect)))
def test_effect_is_observed_over_http(world, path):
    ROWS[path].observe(world)


def test_descriptive_fields_are_recorded_and_shown(world):
    shown = {p: r for p, r in ROWS.items() if isinstance(r, Shown)}
    # one apply per row: the rotation rows set the same key (every, then cron)
    headers = _admin(world)
    for path, row in sorted(shown.items()):
        row.set(world.doc)
        world.apply()
        body = world.client.get(f"/api/v1/{row.resource}/{row.ext_id}", headers=headers).get_json()
        assert row.read(body) == row.expected, (path, body)
