"""`govern credentials connect CREDENTIAL PRINCIPAL` prints the authorize URL; the upstream's redirect to
govern's /oauth/callback completes the connection (the fake authlib upstream consents at once)."""
from __future__ import annotations

import pytest
import requests

from govern.cli.context import cli_actor

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.slow]


def test_connect_from_the_cli_then_the_callback_stores_a_working_refresh_token(live_redis, monkeypatch):
    live = live_redis
    live.upstream.register_client("shop-rt-client", secret="e2e-shop-rt-client-secret", scope="orders.read",
                                  redirect_uris=[live.base + "/oauth/callback"])
    result = live.runner.invoke(["credentials", "connect", "shop-rt", "alice", "--govern-url", live.base,
                                 "--login-hint", "carol"])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip().splitlines()[-1]
    assert url.startswith(live.upstream.authorize_url + "?") and "code_challenge_method=S256" in url
    assert "code_verifier" not in url

    # The browser: the upstream consents and redirects to govern's callback, which exchanges the code.
    page = requests.get(url, timeout=30)
    assert page.status_code == 200, page.text
    assert "Connected" in page.text and page.url.startswith(live.base + "/oauth/callback")
    assert live.upstream.count("authorization_code") == 1

    # The stored refresh token is carol's now: the proxy calls the upstream as her.
    token = live.govern_token()
    orders = live.proxy(token, "shop-user-orders", "api/orders")
    assert orders.status_code == 200, orders.text
    assert orders.json()["user"] == "carol"

    # The state is single-use: replaying the callback is refused.
    replay = requests.get(page.url, timeout=30)
    assert replay.status_code == 400 and replay.json()["code"] == "bad_request"

    # Both callbacks are decisions on record (issue #16); the code and the tokens are not in them.
    connected, replayed = [r for r in live.decisions() if r.action == "connect"]
    assert (connected.outcome, connected.principal, connected.resource_object, connected.rules) == (
        "allow", "alice", "shop-rt", ["permit:connect", f"by:{cli_actor()}"])
    assert (replayed.outcome, replayed.rules, replayed.principal) == ("deny", ["deny:bad_request"], None)
    assert "code=" not in (connected.path or "")


def test_connect_an_unknown_principal_is_one_line(live_redis):
    result = live_redis.runner.invoke(["credentials", "connect", "shop-rt", "nobody", "--govern-url", live_redis.base])
    assert result.exit_code == 2 and result.output.strip().startswith("error:")
