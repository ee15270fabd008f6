"""Issue #16: every decision is on record, with an outcome that tells allowed, denied and failed apart, over
real HTTP with govern wired as `govern serve` wires it (the landscape from `govern apply`, secrets from
`govern secrets put`): /oauth/token issuance and refusal, caller-level proxy refusals (a narrowed IP range,
a suspended user), a call that ends in upstream_not_configured, an upstream 500, and reading it all back
through `govern log show`, GET /api/v1/decisions and `govern log verify`."""
from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.conftest import USER_SECRET

pytestmark = [pytest.mark.db, pytest.mark.slow]


def _reapply(live, tmp_path, old: str, new: str) -> None:
    path = tmp_path / "governance.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    result = live.runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output


def _proxy_until(live, token, name, path, status, deadline_seconds=30.0) -> requests.Response:
    """The authenticator's landscape snapshot follows the database within seconds: poll with a deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        resp = live.proxy(token, name, path)
        if resp.status_code == status:
            return resp
        assert time.monotonic() < deadline, (resp.status_code, resp.text)
        time.sleep(0.1)


def _everything(live) -> str:
    return " ".join(repr({c: getattr(r, c) for c in r.model_fields}) for r in live.decisions(oauth=True))


def test_oauth_token_issuance_and_refusal_are_recorded_without_secrets(live):
    token = live.govern_token(scope="orders.read")
    refused = requests.post(live.base + "/oauth/token", data={"grant_type": "client_credentials"},
                            auth=("order-sync", "not-the-secret-value"), timeout=30)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    unknown = requests.post(live.base + "/oauth/token", data={"grant_type": "client_credentials",
                                                             "scope": "orders.write"},
                            auth=("order-sync", USER_SECRET), timeout=30)
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_scope"
    import base64

    lone = requests.post(live.base + "/oauth/token", data={"grant_type": "client_credentials"}, timeout=30,
                         headers={"Authorization": "Basic " + base64.b64encode(b"lone-secret-value").decode()})
    assert lone.status_code in (400, 401)
    issued, bad_secret, bad_scope, no_colon = live.decisions(oauth=True)[-4:]
    assert (no_colon.outcome, no_colon.integration_user) == ("deny", None)  # a lone value might be a secret
    assert (issued.action, issued.outcome, issued.allowed, issued.integration_user) == (
        "oauth_token", "allow", True, "order-sync")
    assert issued.rules == ["permit:client_credentials", "grant:client_credentials"]
    assert issued.scopes_requested == ["orders.read"] and issued.scopes_granted == ["orders.read"]
    assert issued.source_ip == "127.0.0.1"
    assert (bad_secret.outcome, bad_secret.rules[0], bad_secret.integration_user) == (
        "deny", "deny:invalid_client", "order-sync")
    assert (bad_scope.outcome, bad_scope.rules[0], bad_scope.scopes_requested) == (
        "deny", "deny:invalid_scope", ["orders.write"])
    everything = _everything(live)
    for secret in (USER_SECRET, "not-the-secret-value", "lone-secret-value", token):
        assert secret not in everything


def test_caller_level_proxy_refusals_are_recorded(live, tmp_path):
    token = live.govern_token(scope="orders.read items.read")
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    _reapply(live, tmp_path, "ip_ranges: [127.0.0.0/8]\n    scopes: [orders.read, items.read]",
             "ip_ranges: [10.0.0.0/8]\n    scopes: [orders.read, items.read]")
    resp = _proxy_until(live, token, "stock-api", "v1/items/2", 403)  # allowed until the snapshot follows
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    record = live.decisions()[-1]
    assert (record.action, record.outcome, record.allowed, record.rules) == (
        "proxy", "deny", False, ["deny:ip_outside_ranges"])
    assert (record.integration_user, record.named_credential, record.method, record.path, record.source_ip) == (
        "order-sync", "stock-api", "GET", "v1/items/2", "127.0.0.1")
    assert record.correlation_id == resp.headers["X-Correlation-ID"]

    _reapply(live, tmp_path, "ip_ranges: [10.0.0.0/8]\n    scopes: [orders.read, items.read]",
             "ip_ranges: [127.0.0.0/8]\n    status: suspended\n    scopes: [orders.read, items.read]")
    refusals, deadline = 1, time.monotonic() + 30
    while live.decisions()[-1].rules != ["deny:user_suspended"]:
        assert time.monotonic() < deadline, live.decisions()[-1].rules
        assert live.proxy(token, "stock-api", "v1/items/3").status_code == 403
        refusals += 1
    record = live.decisions()[-1]
    assert (record.outcome, record.integration_user, record.named_credential) == ("deny", "order-sync", "stock-api")
    # Every refused call is on record: one deny record per 403 answered.
    proxied = [r for r in live.decisions() if r.action == "proxy"]
    assert sum(r.outcome == "deny" for r in proxied) == refusals


def test_an_identified_caller_asking_for_an_unknown_named_credential_is_on_record(live):
    token = live.govern_token(scope="orders.read items.read")
    assert live.proxy(token, "no-such-api", "v1/x").status_code == 404
    assert live.upstream_token(token, "no-such-api").status_code == 404
    proxied, asked = live.decisions()[-2:]
    for record, action in ((proxied, "proxy"), (asked, "token")):
        assert (record.action, record.outcome, record.rules, record.named_credential, record.integration_user) == (
            action, "deny", ["deny:unknown_named_credential"], "no-such-api", "order-sync")


def test_failed_calls_are_errors_not_allows(live):
    token = live.govern_token(scope="orders.read items.read")
    live.resources.fail_next(1, status=500)
    resp = live.proxy(token, "stock-api", "v1/items/9")
    assert resp.status_code == 500
    record = live.decisions()[-1]
    assert (record.action, record.allowed, record.outcome, record.upstream_status) == ("proxy", True, "error", 500)

    result = live.runner.invoke(["secrets", "delete", "credential/shop-cc/client_secret", "--yes"])
    assert result.exit_code == 0, result.output
    resp = live.proxy(token, "shop-orders", "api/orders")
    assert resp.json()["code"] == "upstream_not_configured", resp.text
    record = live.decisions()[-1]
    assert (record.allowed, record.outcome, record.error_code, record.named_credential) == (
        True, "error", "upstream_not_configured", "shop-orders")
    resp = live.upstream_token(token, "shop-orders")
    assert resp.json()["code"] == "upstream_not_configured", resp.text
    record = live.decisions()[-1]
    assert (record.action, record.outcome, record.error_code) == ("token", "error", "upstream_not_configured")

    assert live.proxy(token, "stock-api", "v1/items/10").status_code == 200
    assert live.decisions()[-1].outcome == "allow"


def test_decisions_read_back_through_the_api_the_cli_and_verify(live, runner, admin_token):
    token = live.govern_token(scope="orders.read items.read")
    live.resources.fail_next(1, status=500)
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 500
    assert live.proxy(token, "stock-api", "v1/other").status_code == 403  # no grant for this path
    headers = {"Authorization": f"Bearer {admin_token}"}
    page = requests.get(live.base + "/api/v1/decisions", params={"outcome": "error"}, headers=headers, timeout=30)
    assert page.status_code == 200, page.text
    [error] = page.json()["items"]
    assert (error["outcome"], error["upstream_status"], error["path"]) == ("error", 500, "/v1/items/1")
    page = requests.get(live.base + "/api/v1/decisions", params={"after": 0, "limit": 500}, headers=headers,
                        timeout=30).json()
    assert [i["outcome"] for i in page["items"]] == ["allow", "error", "deny"]
    assert [i["action"] for i in page["items"]] == ["oauth_token", "proxy", "proxy"]
    bad = requests.get(live.base + "/api/v1/decisions", params={"outcome": "maybe"}, headers=headers, timeout=30)
    assert bad.status_code == 422
    shown = runner.invoke(["log", "show", "--limit", "2"])
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert " error " in lines[0] and "upstream=500" in lines[0] and " deny " in lines[1]
    verified = runner.invoke(["log", "verify"])
    assert verified.exit_code == 0 and "chain intact: 3 records" in verified.output, verified.output


def test_an_answer_fails_when_its_record_cannot_be_committed(live):
    import sqlalchemy as sa

    token = live.govern_token(scope="orders.read items.read")
    with live.services.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE decision RENAME TO decision_away"))
    try:
        before = live.resources.count
        resp = live.proxy(token, "stock-api", "v1/items/1")
        assert resp.status_code == 503 and resp.json()["code"] == "decision_log_unavailable"
        assert live.resources.count == before + 1  # the call was made, but its answer is not released unrecorded
        refused = requests.post(live.base + "/oauth/token", data={"grant_type": "client_credentials"},
                                auth=("order-sync", USER_SECRET), timeout=30)
        assert refused.status_code == 503 and refused.json()["error"] == "temporarily_unavailable"
        assert "access_token" not in refused.text
    finally:
        with live.services.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE decision_away RENAME TO decision"))
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
