"""The secret store stops (a real OpenBao dev server, stopped and restarted): cached upstream tokens are still
served, anything that needs a secret fails at once with a clean 503, nothing is half-written, and govern
recovers once the store is back."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from govern.store.tables import SecretRef, SecretVersion
from tests.e2e.conftest import store_secrets

pytestmark = [pytest.mark.db, pytest.mark.vault, pytest.mark.slow]


def _secret_rows(services):
    with services.sessions() as s:
        refs = s.execute(sa.select(SecretRef.id, SecretRef.current_version)).all()
        versions = s.execute(sa.select(SecretVersion.id, SecretVersion.stage)).all()
    return sorted(refs), sorted(versions)


def _journal(services):
    from govern.store.upstream_tables import RefreshJournal

    with services.sessions() as s:
        return [(a.state, a.error) for a in s.execute(sa.select(RefreshJournal).order_by(RefreshJournal.id)).scalars()]


def test_store_down_then_back(live_vault):
    live, bao = live_vault, live_vault.extra["openbao"]
    token = live.govern_token(scope="orders.read items.read")
    cached = live.upstream_token(token, "shop-orders").json()["access_token"]
    assert live.proxy(token, "shop-orders", "api/orders").status_code == 200
    rows_before, journal_before = _secret_rows(live.services), _journal(live.services)
    calls_before = dict(live.upstream.counts)
    received_before = live.resources.count

    # With the vault store the cached tokens are sealed by Vault's transit engine: serving them with the
    # store down works only because each process keeps the tokens it already opened (token_cache.OpenedTokens).
    assert live.services.cache_cipher.mode == "transit"
    bao.stop()
    # 1. A cached token is still served, by the token endpoint and through the proxy.
    again = live.upstream_token(token, "shop-orders")
    assert again.status_code == 200 and again.json()["access_token"] == cached
    assert live.proxy(token, "shop-orders", "api/orders").status_code == 200

    # 2. A token not cached yet: a clean 503 problem with Retry-After, for each grant that needs a secret.
    for name in ("shop-jwt-orders", "shop-user-orders"):
        resp = live.upstream_token(token, name)
        assert resp.status_code == 503, resp.text
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.json()["code"] == "secret_store_unavailable" and int(resp.headers["Retry-After"]) > 0
        assert bao.addr not in resp.text

    # 3. The proxy answers 503 for credentials whose secret it must read, without calling the system.
    for name, path in (("stock-api", "v1/items/1"), ("stock-legacy", "v1/items/1"), ("shop-jwt-orders", "api/orders")):
        resp = live.proxy(token, name, path)
        assert resp.status_code == 503, (name, resp.text)
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert int(resp.headers["Retry-After"]) > 0
    assert live.resources.count == received_before

    # 4. Nothing half-written: no upstream grant ran (a refresh token must never rotate without being
    #    stored), no secret rows moved, no refresh attempt was left in doubt.
    assert {k: v for k, v in live.upstream.counts.items()} == calls_before
    assert _secret_rows(live.services) == rows_before
    assert _journal(live.services) == journal_before
    # every answer is on record, the 503s included
    statuses = [(d.named_credential, d.upstream_status) for d in live.decisions() if d.action == "token"]
    assert ("shop-jwt-orders", 503) in statuses

    # 5. Back up (a dev server comes back empty: the operator restores the secrets): govern recovers.
    bao.start()
    bao.client().sys.enable_secrets_engine("transit", path="transit")
    store_secrets(live.runner, live.upstream.issue_refresh_token("shop-rt-client", user="alice"),
                  _bob_key(live))
    for name in ("shop-jwt-orders", "shop-user-orders"):
        resp = live.upstream_token(token, name)
        assert resp.status_code == 200, resp.text
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    assert live.upstream_token(token, "shop-orders").json()["access_token"] == cached


def _bob_key(live) -> str:
    """A new key for bob (the old one went with the dev server's memory), registered at the upstream."""
    from tests.fakes.oauth_server import rsa_keypair

    pem, jwk = rsa_keypair()
    live.upstream.register_user_key("bob@shop", jwk)
    return pem
