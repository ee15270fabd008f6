"""Issue #16, state that lives in one process: with several gunicorn workers and no Redis, a principal is
connected whichever worker the upstream's callback reaches, and whichever process (the API of any worker,
or the CLI) started it. The state and the PKCE verifier live in the database (govern.store.shared_state).

The landscape comes from `govern apply`, the secrets from `govern secrets put`; govern runs as real gunicorn
workers; the only fake is the upstream. With the old in-memory state, each callback had an even chance of
reaching the worker that did not start it, so 8 connects in a row passed once in 256 runs.
"""
from __future__ import annotations

import os

import pytest
import requests

from tests.e2e.conftest import apply_landscape, seed_upstream, store_secrets
from tests.fakes.oauth_server import rsa_keypair
from tests.procs import ROOT, free_port, serving

pytestmark = [pytest.mark.slow]


@pytest.fixture
def gunicorn_govern(tmp_path, settings, runner, fake_upstream, resources):
    _, user_jwk = rsa_keypair()
    refresh_token, bob_pem = seed_upstream(fake_upstream)
    apply_landscape(runner, tmp_path, fake_upstream, resources, user_jwk)
    store_secrets(runner, refresh_token, bob_pem)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_REDIS")}
    # The redirect_uri comes from GOVERN_PUBLIC_URL (never from Host): the address govern is served at.
    env.update(GOVERN_HOME=str(settings.home), GOVERN_DATABASE_URL=settings.database_url,
               GOVERN_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT), GOVERN_PUBLIC_URL=f"http://127.0.0.1:{port}")
    with serving(env, tmp_path / "gunicorn.log", ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
                 port=port) as gunicorn:
        fake_upstream.register_client("shop-rt-client", secret="e2e-shop-rt-client-secret", scope="orders.read",
                                      redirect_uris=[gunicorn.base + "/oauth/callback"])
        yield gunicorn.base


def test_connect_completes_whichever_worker_receives_the_callback(gunicorn_govern, services, runner, fake_upstream):
    from govern.store.admins import create_admin, issue_token

    base = gunicorn_govern
    assert services.cache.kind == "database"
    create_admin(services.sessions, "connector", "a long console passphrase", "admin")
    admin = issue_token(services.sessions, "connector")
    for round_ in range(8):
        started = requests.post(f"{base}/api/v1/credentials/shop-rt/principals/alice/connect", timeout=30,
                                json={"login_hint": f"user{round_}"}, headers={"Authorization": f"Bearer {admin}"})
        assert started.status_code == 200, started.text
        page = requests.get(started.json()["authorize_url"], timeout=30)
        assert page.status_code == 200 and "Connected" in page.text, (round_, page.status_code, page.text[:300])
    assert fake_upstream.count("authorization_code") == 8

    # Started by the CLI (another process again), finished by whichever worker the callback reaches.
    result = runner.invoke(["credentials", "connect", "shop-rt", "alice", "--govern-url", base])
    assert result.exit_code == 0, result.output
    page = requests.get(result.stdout.strip().splitlines()[-1], timeout=30)
    assert page.status_code == 200 and "Connected" in page.text, page.text[:300]
    replay = requests.get(page.url, timeout=30)  # the state is single-use across processes too
    assert replay.status_code == 400
