"""`govern offboard USER [--commit]` end to end (issue #21): the landscape from `govern apply`, a per-user principal
connected through the real connect flow (CLI + browser + govern's /oauth/callback), the proxy calling the upstream
as that user, then the dry run (nothing changes) and the commit: the provider's RFC 7009 endpoint (the authlib
fake's /oauth/revoke) invalidates the tokens, so the provider refuses them afterwards, and the retired user's token
requests are refused. A revocation the provider keeps failing (5xx) is retried, reported, alerted and counted."""
from __future__ import annotations

import json
import logging

import pytest
import requests

from tests.e2e.conftest import Live, put_secret, serve

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.slow]

USER_SECRET = "offboard-order-sync-client-secret"
RT_CLIENT_SECRET = "offboard-shop-users-client-secret"

LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: shop, name: Shop, kind: erp, scopes: [orders.read]}}
credentials:
  - id: shop-users
    system: shop
    protocol: oauth2_refresh_token
    token_url: {token_url}
    authorize_url: {authorize_url}
    revocation_endpoint: {revocation_url}
    client_id: shop-users-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principal_type: per_user
    principals: [{{name: dana, user: order-sync}}]
named_credentials:
  - {{id: shop-user-orders, credential: shop-users, url: "{upstream_url}", methods: [GET], paths: ["/api/**"]}}
integration_users:
  - id: order-sync
    name: Order sync
    owner: shop-team@example.com
    justification: Reads orders as its own shop user.
    review_date: 2099-01-01
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read]
    permission_sets: [shop-reader]
permission_sets:
  - id: shop-reader
    scopes: [orders.read]
    api_types: [REST]
    grants:
      - {{named_credential: shop-user-orders, methods: [GET], paths: ["/api/orders"]}}
"""


@pytest.fixture
def offboard_live(tmp_path, settings, runner, fake_upstream, monkeypatch, redis_url, redis_prefix):
    """govern as `govern serve` builds it, on a real port, with Redis shared by the server and the CLI."""
    import redis

    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import _ENV_NAMES

    overrides = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    for name, value in overrides.items():
        monkeypatch.setenv(_ENV_NAMES[name], str(value))
    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE.format(token_url=fake_upstream.token_url, authorize_url=fake_upstream.authorize_url,
                                     revocation_url=fake_upstream.revocation_url, upstream_url=fake_upstream.url))
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    put_secret(runner, ["--user", "order-sync", "--field", "client_secret"], USER_SECRET)
    put_secret(runner, ["shop-users", "--field", "client_secret"], RT_CLIENT_SECRET)
    holder = {}
    base, server = serve(lambda environ, start_response: holder["app"](environ, start_response))
    services = build_services(settings.with_overrides(public_url=base, **overrides))
    holder["app"] = create_app({}, services=services)
    fake_upstream.register_client("shop-users-client", secret=RT_CLIENT_SECRET, scope="orders.read",
                                  redirect_uris=[base + "/oauth/callback"])
    live = Live(base, services, fake_upstream, None, runner, "", "")
    yield live
    server.shutdown()
    services.close()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=redis_prefix + "*"):
        client.delete(key)


def _connect(live: Live) -> None:
    """The real connect flow: the CLI prints the authorize URL, the browser consents, govern's callback stores."""
    result = live.runner.invoke(["credentials", "connect", "shop-users", "dana", "--govern-url", live.base,
                                 "--login-hint", "dana"])
    assert result.exit_code == 0, result.output
    page = requests.get(result.stdout.strip().splitlines()[-1], timeout=30)
    assert page.status_code == 200 and "Connected" in page.text, page.text


def _stored_refresh_token(live: Live) -> str | None:
    stored = live.services.upstream_tokens.secrets.current("shop-users", "dana", "refresh_token")
    return stored.value.reveal() if stored is not None else None


def _user_token_status(live: Live) -> int:
    return requests.post(live.base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                         auth=("order-sync", USER_SECRET), timeout=30).status_code


def _refresh_at_provider(live: Live, refresh_token: str) -> requests.Response:
    return requests.post(live.upstream.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                         auth=("shop-users-client", RT_CLIENT_SECRET), timeout=30)


def test_dry_run_changes_nothing_then_commit_revokes_at_the_provider_and_retires(offboard_live):
    live = offboard_live
    _connect(live)
    orders = live.proxy(live.govern_token(secret=USER_SECRET), "shop-user-orders", "api/orders")
    assert orders.status_code == 200 and orders.json()["user"] == "dana", orders.text
    refresh_token = _stored_refresh_token(live)
    # The code exchange's access token (govern drops it) and the refresh grant's, which govern has cached.
    access_tokens = [v for v, t in live.upstream.access_tokens.items() if t.user == "dana"]
    assert refresh_token and live.upstream.refresh_token_valid(refresh_token) and len(access_tokens) == 2

    dry = live.runner.invoke(["offboard", "order-sync"])
    assert dry.exit_code == 0, dry.output
    assert "Dry run, nothing changed" in dry.output
    assert "planned  revoke access_token (credential shop-users principal dana via shop-user-orders)" in dry.output
    assert "planned  revoke refresh_token (credential shop-users principal dana)" in dry.output
    assert "planned  retire integration_user: status active -> retired" in dry.output
    # Nothing changed: no call to the provider, the tokens work, the user still gets tokens, nothing recorded.
    assert live.upstream.count("revoke") == 0
    assert live.upstream.refresh_token_valid(refresh_token) and live.upstream.access_token_valid(access_tokens[-1])
    assert _stored_refresh_token(live) == refresh_token
    assert _user_token_status(live) == 200
    assert not [d for d in live.decisions() if d.action == "offboard"]

    done = live.runner.invoke(["offboard", "order-sync", "--commit", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    outcomes = [(i["action"], i["what"], i["outcome"]) for i in report["items"]]
    assert outcomes == [("revoke", "access_token", "done"), ("delete", "access_token", "done"),
                        ("revoke", "refresh_token", "done"), ("delete", "refresh_token", "done"),
                        ("disable", "principal", "done"), ("retire", "integration_user", "done")]
    assert report["failed"] == 0 and report["committed"] is True
    # The provider got RFC 7009 requests from govern's client, with the hints, and refuses the tokens now.
    assert [(r["client_id"], r["kind"], r["hint"]) for r in live.upstream.revocations] == [
        ("shop-users-client", "access_token", "access_token"), ("shop-users-client", "refresh_token", "refresh_token")]
    refused = _refresh_at_provider(live, refresh_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert not any(live.upstream.access_token_valid(t) for t in access_tokens)
    assert requests.get(live.upstream.url + "/api/orders", headers={"Authorization": f"Bearer {access_tokens[-1]}"},
                        timeout=30).status_code == 401
    # govern forgot them, and the retired user's token requests are refused.
    assert _stored_refresh_token(live) is None
    assert _user_token_status(live) == 401
    # Each item is a decision on record; no token value anywhere in the output or the records.
    records = [d for d in live.decisions() if d.action == "offboard"]
    assert [(d.rules, d.outcome) for d in records] == [
        (["permit:revoke_access_token"], "allow"), (["permit:delete_access_token"], "allow"),
        (["permit:revoke_refresh_token"], "allow"), (["permit:delete_refresh_token"], "allow"),
        (["permit:disable_principal"], "allow"), (["permit:retire_integration_user"], "allow")]
    assert {d.integration_user for d in records} == {"order-sync"}
    for secret in (refresh_token, *access_tokens):
        assert secret not in dry.output + done.output
        assert not any(secret in json.dumps(d.model_dump(mode="json")) for d in records)

    # Again: nothing left to revoke, the user is already retired.
    again = live.runner.invoke(["offboard", "order-sync", "--commit"])
    assert again.exit_code == 0, again.output
    assert "skipped  retire integration_user: already retired" in again.output
    assert live.upstream.count("revoke") == 2


def test_a_revocation_the_provider_keeps_failing_is_retried_reported_alerted_and_counted(offboard_live, caplog):
    live = offboard_live
    _connect(live)
    refresh_token = _stored_refresh_token(live)
    assert refresh_token
    live.upstream.inject("5xx", grant="revoke", times=None, status=503)

    with caplog.at_level(logging.INFO):
        result = live.runner.invoke(["offboard", "order-sync", "--commit"])
    assert result.exit_code == 1, result.output
    assert "failed   revoke refresh_token (credential shop-users principal dana): HTTP 503 (server_error); " \
           "gave up after 4 attempts\n" in result.output  # said once
    assert "skipped  delete refresh_token (credential shop-users principal dana): kept" in result.output
    assert "1 item(s) failed" in result.output
    assert live.upstream.count("revoke") == 4  # one call and three retries
    # The token is still valid at the provider, so govern keeps it to retry; the user is retired all the same.
    assert live.upstream.refresh_token_valid(refresh_token) and _stored_refresh_token(live) == refresh_token
    assert _user_token_status(live) == 401
    # The alert (through the notifier: here the log notifier) and the metric.
    alerts = [r for r in caplog.records if r.name == "govern.notify" and getattr(r, "event", None)
              == "alert.upstream_revocation_failed"]
    assert len(alerts) == 1 and alerts[0].payload["credential"] == "shop-users"
    assert refresh_token not in caplog.text + result.output
    failed = [d for d in live.decisions() if d.action == "offboard" and d.outcome == "error"]
    assert [(d.rules, d.error_code, d.upstream_status) for d in failed] == [
        (["permit:revoke_refresh_token"], "upstream_revocation_failed", 503)]
    metrics = requests.get(live.base + "/metrics", timeout=30).text
    assert 'govern_upstream_revocation_failures_total{credential="shop-users"} 1.0' in metrics

    # The provider recovers: running the command again revokes the kept token.
    live.upstream.clear_faults()
    again = live.runner.invoke(["offboard", "order-sync", "--commit"])
    assert again.exit_code == 0, again.output
    assert "done     revoke refresh_token" in again.output
    assert not live.upstream.refresh_token_valid(refresh_token) and _stored_refresh_token(live) is None


def test_offboarding_an_unknown_user_is_one_line(offboard_live):
    result = offboard_live.runner.invoke(["offboard", "nobody", "--commit"])
    assert result.exit_code == 2 and result.output.strip() == "error: no integration user 'nobody'"


def _apply(tmp_path, runner, upstream, change):
    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE.replace(*change).format(
        token_url=upstream.token_url, authorize_url=upstream.authorize_url,
        revocation_url=upstream.revocation_url, upstream_url=upstream.url))
    return runner.invoke(["apply", "-f", str(path)])


def test_a_plain_http_revocation_endpoint_is_warned_about_like_a_token_url(tmp_path, runner, fake_upstream):
    result = _apply(tmp_path, runner, fake_upstream, (
        "revocation_endpoint: {revocation_url}", "revocation_endpoint: http://login.shop.example/oauth/revoke"))
    assert result.exit_code == 0, result.output
    assert "revocation_endpoint: plain http sends the credential in clear" in result.output


def test_an_unknown_revocation_client_auth_is_refused_by_apply(tmp_path, runner, fake_upstream):
    result = _apply(tmp_path, runner, fake_upstream, (
        "revocation_endpoint: {revocation_url}", "revocation_endpoint: {revocation_url}\n    revocation_client_auth: mtls"))
    assert result.exit_code == 2 and "revocation_client_auth" in result.output, result.output


def test_an_unreachable_revocation_endpoint_is_retried_then_reported(offboard_live, tmp_path):
    live = offboard_live
    _connect(live)
    refresh_token = _stored_refresh_token(live)
    # Nothing listens on port 9 of the loopback: every attempt fails to connect.
    result = _apply(tmp_path, live.runner, live.upstream, (
        "revocation_endpoint: {revocation_url}", "revocation_endpoint: http://127.0.0.1:9/oauth/revoke"))
    assert result.exit_code == 0, result.output
    result = live.runner.invoke(["offboard", "order-sync", "--commit", "--json"])
    assert result.exit_code == 1, result.output
    item = next(i for i in json.loads(result.stdout)["items"] if i["what"] == "refresh_token" and i["action"] == "revoke")
    assert (item["outcome"], item["attempts"], item["status"]) == ("failed", 4, None)
    assert "cannot be reached" in item["detail"] and refresh_token not in result.output
    assert live.upstream.refresh_token_valid(refresh_token) and _stored_refresh_token(live) == refresh_token
