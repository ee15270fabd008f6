"""The edge described once (issue #15): every route is in the OpenAPI document, and every (path, method, status)
the document promises is one a request through the real app produces.

The landscape is built as a user builds it: `POST /api/v1/apply` of a governance.yaml whose systems are the
test's own fake upstreams (an OAuth server and a resource server on loopback), secrets through
`PUT /api/v1/.../secrets/...`, a govern access token from `POST /oauth/token`. Then a table of requests runs
through the whole WSGI stack (ProxyEdge and TokenEdge included); each answer is recorded under the route it
matched, and the documented set is checked against what was seen, both ways.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import requests

from govern.api.openapi import openapi_path
from tests.fakes.oauth_server import FakeUpstream
from tests.fakes.resource_server import ResourceServer

USER_SECRET = "coverage-user-secret-5d2a"
UPSTREAM_SECRET = "coverage-upstream-secret-7c1e"
API_KEY = "coverage-api-key-93b0"
PUBLIC = "http://127.0.0.1:8000"  # GOVERN_PUBLIC_URL's development default
_PROXY = re.compile(r"^/api/v1/named-credentials/[^/]+/proxy/")

LANDSCAPE = """\
apiVersion: govern/v1
systems:
  - id: erp
    scopes: [orders.read, orders.write]
  - id: shop
    scopes: [orders.read]
credentials:
  - id: erp-cc
    system: erp
    protocol: oauth2_client_credentials
    token_url: {oauth}/oauth/token
    client_id: erp-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: default}}]
  - id: erp-rt
    system: erp
    protocol: oauth2_refresh_token
    token_url: {oauth}/oauth/token
    authorize_url: {oauth}/oauth/authorize
    client_id: erp-rt-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: alice, subject: alice}}]
  - id: shop-key
    system: shop
    protocol: api_key_header
    header: X-Api-Key
    principals: [{{name: default}}]
{proxy_credentials}named_credentials:
{proxy_named}  - {{id: erp-api, credential: erp-cc, url: "{oauth}/api", methods: [GET]}}
  - {{id: erp-rt-api, credential: erp-rt, url: "{oauth}/api", methods: [GET]}}
  - id: shop-api
    credential: shop-key
    url: {resource}/api
    methods: [GET, POST, PUT, PATCH, DELETE]
integration_users:
  - id: order-sync
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read]
    permission_sets: [orders]
  - id: batch-sync
    ip_ranges: [127.0.0.0/8]
permission_sets:
  - id: orders
    scopes: [orders.read]
    grants:
      - {{named_credential: erp-api, principal: default}}
      - {{named_credential: erp-rt-api, principal: alice}}
      - {{named_credential: shop-api, principal: default}}
{proxy_grants}"""
# One system per refusal of the proxy, each with its own api_key credential and named credential:
# (system, contract, named credential settings, url) where {resource} is the resource server.
ALL_DAY = ", ".join(f"{{day: {d}, start: '00:00', end: '00:00'}}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
PROXY_CASES = {
    "queued": (f"{{maintenance_windows: [{ALL_DAY}]}}", "during_maintenance: queue", "{resource}/api"),
    "spent": ("{daily_api_budget: 1}", "during_maintenance: refuse", "{resource}/api"),
    "nokey": ("{}", "during_maintenance: refuse", "{resource}/api"),  # its api_key is never put: 502
    "small": ("{}", "max_body: 10", "{resource}/api"),
    "slow": ("{}", "timeout: 0.5, retry: {attempts: 1}", "{resource}/api"),
    "dead": ("{}", "retry: {attempts: 1}, circuit_breaker: {failures: 1, reset: 3600}", "http://127.0.0.1:9/api"),
}


def _landscape(oauth: str, resource: str) -> str:
    systems, credentials, named, grants = "", "", "", ""
    for case, (contract, settings, url) in PROXY_CASES.items():
        systems += f"  - {{id: {case}, scopes: [orders.read], contract: {contract}}}\n"
        credentials += (f"  - {{id: {case}-key, system: {case}, protocol: api_key_header, header: X-Api-Key, "
                        f"principals: [{{name: default}}]}}\n")
        named += (f"  - {{id: {case}-api, credential: {case}-key, url: \"{url.replace('{resource}', resource)}\", "
                  f"methods: [GET, POST, PUT, PATCH, DELETE], {settings}}}\n")
        grants += f"      - {{named_credential: {case}-api, principal: default}}\n"
    text = LANDSCAPE.format(oauth=oauth, resource=resource, proxy_credentials=credentials, proxy_named=named,
                            proxy_grants=grants)
    return text.replace("systems:\n", "systems:\n" + systems, 1)

# Documented answers no request of this table produces yet, each named with why. The test fails when one of
# them is produced (take it off the list) and when any other documented answer is not.
_IN_FLIGHT = "needs a second call with the same Idempotency-Key while the first is still in flight (a race)"
_PARKED = "needs a run parked after its rotator failed every attempt"
NOT_YET_PRODUCED: dict[tuple[str, str, str], str] = {
    ("/api/v1/apply", "post", "409"): "needs another apply to change the landscape while this one runs (a race)",
    **{("/api/v1/named-credentials/{name}/proxy/{path}", method, "409"): _IN_FLIGHT
       for method in ("get", "post", "put", "patch", "delete")},
    ("/api/v1/rotations/{run_id}/retry", "post", "202"): _PARKED,
    ("/api/v1/rotations/{run_id}/acknowledge", "post", "200"): _PARKED,
}


@dataclass
class Seen:
    app: object
    client: object
    statuses: set[tuple[str, str, str]] = field(default_factory=set)

    def route(self, method: str, url: str) -> str:
        path = url.split("?", 1)[0]
        if _PROXY.match(path):
            return "/api/v1/named-credentials/{name}/proxy/{path}"
        adapter = self.app.url_map.bind("localhost")
        rule, _ = adapter.match(path, method=method, return_rule=True)
        return openapi_path(rule.rule)

    def call(self, method: str, url: str, **kw):
        response = self.client.open(url, method=method, **kw)
        self.statuses.add((self.route(method, url), method.lower(), str(response.status_code)))
        return response


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _documented(doc: dict) -> set[tuple[str, str, str]]:
    return {(path, method, status) for path, operations in doc["paths"].items()
            for method, op in operations.items() for status in op["responses"]}


def test_every_api_route_is_documented_with_its_methods(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method.lower() not in doc["paths"].get(openapi_path(rule.rule), {}):
                missing.append(f"{method} {rule.rule}")
    assert missing == [], "describe these views with govern.api.spec.api.validate"


@pytest.fixture
def oauth_upstream():
    upstream = FakeUpstream().start()
    upstream.register_client("erp-client", secret=UPSTREAM_SECRET)
    upstream.register_client("erp-rt-client", secret=UPSTREAM_SECRET, redirect_uris=[f"{PUBLIC}/oauth/callback"])
    yield upstream
    upstream.stop()


@pytest.fixture
def resource_upstream():
    server = ResourceServer().start()
    yield server
    server.stop()


def _admins(services) -> dict[str, str]:
    from govern.store.admins import create_admin, issue_token

    tokens = {}
    for role in ("auditor", "operator", "admin"):
        create_admin(services.sessions, f"cov-{role}", "correct horse battery staple", role)
        tokens[role] = issue_token(services.sessions, f"cov-{role}")
    return tokens


def _instance_with_services_down(settings, tmp_path):
    """govern on the same database, with Redis and the secret store (OpenBao) at addresses where nothing listens."""
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings

    home = tmp_path / "down"
    home.mkdir()
    down = load_settings({"GOVERN_REDIS_URL": "redis://127.0.0.1:1/0", "GOVERN_SECRET_STORE": "vault",
                          "GOVERN_VAULT_ADDR": "http://127.0.0.1:1", "GOVERN_VAULT_TOKEN": "unused"},
                         home=home, database_url=settings.database_url)
    return create_app({"TESTING": True}, services=build_services(down))


def test_every_documented_status_is_produced(app, client, services, runner, tmp_path, oauth_upstream,
                                             resource_upstream):
    seen = Seen(app, client)
    call: Callable = seen.call
    roles = _admins(services)
    admin, auditor, operator = _auth(roles["admin"]), _auth(roles["auditor"]), _auth(roles["operator"])
    yaml = {"Content-Type": "application/yaml"}
    document = _landscape(oauth_upstream.url, resource_upstream.url)

    # --- the landscape, through the API ----------------------------------------------------------------
    planned = call("POST", "/api/v1/apply?dry_run=true", data=document, headers={**admin, **yaml})
    assert planned.status_code == 200, planned.get_json()
    applied = call("POST", "/api/v1/apply", data=document, headers={**admin, **yaml})
    assert applied.status_code == 200, applied.get_json()
    for url, value in (("/api/v1/integration-users/order-sync/secrets/client_secret", USER_SECRET),
                       ("/api/v1/credentials/erp-cc/secrets/client_secret", UPSTREAM_SECRET),
                       ("/api/v1/credentials/erp-rt/secrets/client_secret", UPSTREAM_SECRET),
                       ("/api/v1/credentials/shop-key/secrets/api_key?principal=default", API_KEY),
                       ("/api/v1/integration-users/batch-sync/secrets/client_secret", USER_SECRET),
                       *((f"/api/v1/credentials/{case}-key/secrets/api_key?principal=default", API_KEY)
                         for case in PROXY_CASES if case != "nokey")):
        put = call("PUT", url, json={"value": value}, headers=admin)
        assert put.status_code == 200, (url, put.get_json())
    call("POST", "/api/v1/apply", data="systems: [", headers={**admin, **yaml})  # 422
    call("POST", "/api/v1/apply", data=document, headers={**admin, "Content-Type": "text/plain"})  # 415
    call("POST", "/api/v1/apply", data=document, headers={**auditor, **yaml})  # 403
    call("POST", "/api/v1/apply", data=document, headers=yaml)  # 401

    # --- govern's OAuth server -----------------------------------------------------------------------------
    form = {"grant_type": "client_credentials", "scope": "orders.read"}
    issued = call("POST", "/oauth/token", data=form, headers=_basic("order-sync", USER_SECRET))
    assert issued.status_code == 200, issued.get_json()
    caller = _auth(issued.get_json()["access_token"])
    call("POST", "/oauth/token", data={}, headers=_basic("order-sync", USER_SECRET))  # 400 invalid_request
    call("POST", "/oauth/token", data=form, headers=_basic("order-sync", "wrong"))  # 401
    call("GET", "/oauth/jwks.json")
    call("GET", "/.well-known/oauth-authorization-server")
    call("GET", "/api/v1/openapi.json")
    call("GET", "/healthz")
    call("GET", "/readyz")

    # --- reads, as an auditor ------------------------------------------------------------------------------
    for resource, one in (("systems", "erp"), ("credentials", "erp-cc"), ("named-credentials", "erp-api"),
                          ("integration-users", "order-sync"), ("permission-sets", "orders")):
        call("GET", f"/api/v1/{resource}?limit=2", headers=auditor)
        call("GET", f"/api/v1/{resource}/{one}", headers=auditor)
        call("GET", f"/api/v1/{resource}/nothing-by-that-name", headers=auditor)
    for url in ("/api/v1/credentials/erp-cc/secrets", "/api/v1/integration-users/order-sync/secrets",
                "/api/v1/credentials/nothing/secrets", "/api/v1/integration-users/nobody/secrets",
                "/api/v1/breakers", "/api/v1/systems/erp/breaker", "/api/v1/systems/nothing/breaker",
                "/api/v1/decisions", "/api/v1/decisions?outcome=maybe", "/api/v1/findings",
                "/api/v1/findings?severity=dire", "/api/v1/findings/2147483647", "/api/v1/audit/runs",
                "/api/v1/rotations", "/api/v1/rotations?state=dreaming", "/api/v1/rotations/2147483647"):
        call("GET", url, headers=auditor)

    # --- secrets ---------------------------------------------------------------------------------------------
    call("PUT", "/api/v1/credentials/nothing/secrets/client_secret", json={"value": "v"}, headers=admin)  # 404
    call("PUT", "/api/v1/integration-users/nobody/secrets/client_secret", json={"value": "v"}, headers=admin)
    call("PUT", "/api/v1/credentials/erp-cc/secrets/api_key", json={"value": "v"}, headers=admin)  # 422 field
    call("PUT", "/api/v1/integration-users/order-sync/secrets/client_secret", json={"secret": "v"}, headers=admin)
    call("DELETE", "/api/v1/credentials/nothing/secrets/client_secret", headers=admin)
    call("DELETE", "/api/v1/integration-users/nobody/secrets/client_secret", headers=admin)

    # --- rotations -------------------------------------------------------------------------------------------
    call("POST", "/api/v1/rotations", json={}, headers=operator)  # 422
    call("POST", "/api/v1/rotations", json={"secret": "nothing"}, headers=operator)  # 404
    call("POST", "/api/v1/rotations", json={"secret": "x"}, headers=auditor)  # 403
    started = call("POST", "/api/v1/rotations", json={"secret": "credential/erp-cc/client_secret"}, headers=operator)
    if started.status_code == 202:
        run = started.get_json()["id"]
        call("GET", f"/api/v1/rotations/{run}", headers=auditor)
        call("POST", "/api/v1/rotations", json={"secret": "credential/erp-cc/client_secret"}, headers=operator)
        call("DELETE", "/api/v1/credentials/erp-cc/secrets/client_secret", headers=admin)  # 409: being rotated
        for action in ("retry", "confirm", "acknowledge"):
            call("POST", f"/api/v1/rotations/{run}/{action}", headers=operator)  # 409: not in that state
        worked = runner.invoke(["worker", "--once"])  # the manual rotator stages a value and waits for a person
        assert worked.exit_code == 0, worked.output
        assert call("GET", f"/api/v1/rotations/{run}", headers=auditor).get_json()["state"] == "awaiting_confirmation"
        call("POST", f"/api/v1/rotations/{run}/confirm", headers=operator)  # 202
    for action in ("retry", "confirm", "acknowledge"):
        call("POST", f"/api/v1/rotations/2147483647/{action}", headers=operator)
        call("POST", f"/api/v1/rotations/1/{action}", headers=auditor)

    # --- connecting a principal ----------------------------------------------------------------------------
    connect = "/api/v1/credentials/erp-rt/principals/alice/connect"
    call("POST", "/api/v1/credentials/erp-rt/principals/nobody/connect", headers=admin)  # 404
    call("POST", connect, data="5", headers={**admin, "Content-Type": "application/json"})  # 422
    call("POST", connect, headers=auditor)  # 403
    call("GET", "/oauth/callback?code=abc&state=forged")  # 400
    started = call("POST", connect, json={"login_hint": "alice"}, headers=admin)
    assert started.status_code == 200, started.get_json()
    back = requests.get(started.get_json()["authorize_url"], allow_redirects=False, timeout=10).headers["Location"]
    assert call("GET", back[len(PUBLIC):]).status_code == 200

    # --- the broker: upstream tokens ------------------------------------------------------------------------
    token = "/api/v1/named-credentials/erp-api/token"
    first = call("POST", token, json={"scope": "orders.read"}, headers=caller)
    assert first.status_code == 200, first.get_json()
    call("POST", token, json={"scope": 5}, headers=caller)  # 422
    call("POST", token, json={"scope": "orders.write"}, headers=caller)  # 403
    call("POST", "/api/v1/named-credentials/nothing/token", headers=caller)  # 404
    call("POST", token)  # 401
    # the caller reports the token refused: govern fetches a new one, and the upstream fails
    for fault in ("invalid_client", "5xx"):  # 502: govern's client is refused; 503: the upstream is down
        oauth_upstream.inject(fault, grant="client_credentials", status=503, times=5)
        refused = {"scope": "orders.read", "rejected_token": first.get_json()["access_token"]}
        call("POST", token, json=refused, headers=caller)
        oauth_upstream.clear_faults()
        first = call("POST", token, json={"scope": "orders.read"}, headers=caller)
    oauth_upstream.inject("invalid_grant", grant="refresh_token", times=5)
    call("POST", "/api/v1/named-credentials/erp-rt-api/token", json={"scope": "orders.read"}, headers=caller)  # 409
    oauth_upstream.clear_faults()
    # the upstream fails the code exchange of a second connect
    for fault in ("invalid_client", "5xx"):  # 502, 503
        again = call("POST", connect, json={}, headers=admin).get_json()["authorize_url"]
        back = requests.get(again, allow_redirects=False, timeout=10).headers["Location"]
        oauth_upstream.inject(fault, grant="authorization_code", status=503, times=1)
        call("GET", back[len(PUBLIC):])
        oauth_upstream.clear_faults()

    # --- the callout proxy ------------------------------------------------------------------------------------
    proxy = "/api/v1/named-credentials/shop-api/proxy/orders"
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        body = {"json": {"n": 1}} if method in ("POST", "PUT", "PATCH") else {}
        call(method, proxy, headers=caller, **body)  # the upstream's answer, passed through
        call(method, proxy, **body)  # 401
        call(method, "/api/v1/named-credentials/nothing/proxy/orders", headers=caller, **body)  # 404
        call(method, "/api/v1/named-credentials/shop-api/proxy/%2e%2e/%2e%2e/admin", headers=caller)  # 400
        call(method, proxy, headers=caller, environ_base={"REMOTE_ADDR": "192.0.2.1"})  # 403
    queued = None
    url = "/api/v1/named-credentials/{}-api/proxy/orders"
    assert call("GET", url.format("spent"), headers=caller).status_code == 200  # the day's one call
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        answer = call(method, url.format("queued"), headers=caller, data=b"{}")  # 202: queued for after the window
        queued = answer.headers.get("Location") or queued
        call(method, url.format("spent"), headers=caller)  # 429: the daily budget is spent
        call(method, url.format("small"), headers=caller, data=b"x" * 11)  # 413
        call(method, url.format("nokey"), headers=caller)  # 502: the credential has no api_key
        resource_upstream.slow_next(1, delay=1.5)
        call(method, url.format("slow"), headers=caller)  # 504
        call(method, url.format("dead"), headers=caller)  # 503: unreachable, then the breaker is open
    assert queued, "no call was queued"
    call("GET", queued, headers=caller)  # 200
    call("GET", "/api/v1/named-credentials/shop-api/queued/2147483647", headers=caller)  # 404
    call("GET", "/api/v1/named-credentials/shop-api/queued/1")  # 401
    call("GET", "/api/v1/named-credentials/shop-api/queued/1", headers=caller,
         environ_base={"REMOTE_ADDR": "192.0.2.1"})  # 403

    # --- disconnecting a principal (its revocations are queued for the worker) ---------------------------------
    disconnect = "/api/v1/credentials/erp-rt/principals/alice/connection"
    call("DELETE", "/api/v1/credentials/erp-rt/principals/nobody/connection", headers=admin)  # 404
    call("DELETE", disconnect + "?dry_run=maybe", headers=admin)  # 400
    assert call("DELETE", disconnect + "?dry_run=true", headers=admin).get_json()["committed"] is False  # 200

    # --- malformed requests, refused before any view (govern/api/edge.py) ------------------------------------
    for path, operations in client.get("/api/v1/openapi.json").get_json()["paths"].items():
        url = re.sub(r"{[^}]+}", "1", path)
        for method in operations:
            if _PROXY.match(url):
                call(method.upper(), url, headers={**caller, "Content-Length": "abc"})
                continue
            call(method.upper(), url + "?q=%00", headers=admin)
            if operations[method].get("x-govern-role"):
                call(method.upper(), url)  # 401: no admin token
                if "403" in operations[method]["responses"]:
                    call(method.upper(), url, headers=auditor)  # 403: below the role

    # --- audit findings --------------------------------------------------------------------------------------
    audited = runner.invoke(["audit"])
    assert audited.exit_code == 0, audited.output
    findings = call("GET", "/api/v1/findings", headers=auditor).get_json()["items"]
    assert findings, "the audit found nothing to show"
    call("GET", f"/api/v1/findings/{findings[0]['id']}", headers=auditor)

    # --- an instance whose cache and secret store are down -----------------------------------------------------
    down = _instance_with_services_down(services.settings, tmp_path)
    try:
        seen_down = Seen(down, down.test_client())
        from govern.store.admins import issue_token

        down_admin = _auth(issue_token(down.extensions["govern"].sessions, "cov-admin"))
        seen_down.call("GET", "/readyz")  # 503
        seen_down.call("POST", "/oauth/token", data=form, headers=_basic("order-sync", USER_SECRET))  # 503
        for url in ("/api/v1/credentials/erp-cc/secrets/client_secret",
                    "/api/v1/integration-users/order-sync/secrets/client_secret"):
            seen_down.call("PUT", url, json={"value": "v"}, headers=down_admin)  # 503
        for url in ("/api/v1/credentials/spent-key/secrets/api_key?principal=default",
                    "/api/v1/integration-users/batch-sync/secrets/client_secret"):
            seen_down.call("DELETE", url, headers=down_admin)  # 503
        seen.statuses |= seen_down.statuses
    finally:
        down.extensions["govern"].close()

    # --- deleting secrets ------------------------------------------------------------------------------------
    call("DELETE", "/api/v1/credentials/shop-key/secrets/api_key?principal=default", headers=admin)  # 200
    call("DELETE", "/api/v1/integration-users/batch-sync/secrets/client_secret", headers=admin)  # 200
    rotating = call("POST", "/api/v1/rotations", json={"secret": "integration_user/order-sync/client_secret"},
                    headers=operator)
    assert rotating.status_code == 202, rotating.get_json()
    call("DELETE", "/api/v1/integration-users/order-sync/secrets/client_secret", headers=admin)  # 409

    # --- a guesser at /oauth/token is slowed down ------------------------------------------------------------
    for _ in range(60):
        if call("POST", "/oauth/token", data=form, headers=_basic("order-sync", "guess"),
                environ_base={"REMOTE_ADDR": "127.0.0.9"}).status_code == 429:
            break

    # --- a document larger than any request govern reads -------------------------------------------------------
    call("POST", "/api/v1/apply", data="#" * (app.config["MAX_CONTENT_LENGTH"] + 1), headers={**admin, **yaml})

    doc = client.get("/api/v1/openapi.json").get_json()
    documented = _documented(doc)
    proxy_default = {(p, m, "default") for p, m, s in documented if s == "default"}
    undocumented = {(p, m, s) for p, m, s in seen.statuses
                    if (p, m, s) not in documented and (p, m, "default") not in proxy_default}
    assert undocumented == set(), "answers the document does not list"
    produced_anyway = {key for key in NOT_YET_PRODUCED if key in seen.statuses}
    assert produced_anyway == set(), "produced now: take these off NOT_YET_PRODUCED"
    passed_through = {(p, m, "default") for p, m, s in seen.statuses
                      if (p, m, s) not in documented and (p, m, "default") in proxy_default}
    missing = sorted(documented - seen.statuses - passed_through - set(NOT_YET_PRODUCED))
    assert missing == [], "documented, never produced:\n" + "\n".join(" ".join(m) for m in missing)
