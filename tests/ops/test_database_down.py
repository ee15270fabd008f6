"""govern's database goes away under a running server and comes back.

While PostgreSQL refuses govern's connections (here: the database stops accepting connections and its sessions
are ended, as a restart or a failover does), every request that needs it gets 503 with Retry-After, whichever
edge it enters by: `database_unavailable` (or `decision_log_unavailable` where the decision could not be
recorded) as problem+json from the API, the token edge and the proxy, and RFC 6749's `temporarily_unavailable`
from /oauth/token. Never a 500, and never the driver's text. The server log says why in one line per request,
with no traceback. When the database accepts connections again, the same server answers as before: no restart.

The landscape comes from `govern apply`, the secrets from `govern secrets put`; govern runs as real gunicorn
workers on its own PostgreSQL database. (Found while chasing a 500 that CI showed without its log: a replayed
connect callback in the PostgreSQL pass.)
"""
from __future__ import annotations

import os

import pytest
import requests
import sqlalchemy as sa

from tests.e2e.conftest import USER_SECRET, apply_landscape, seed_upstream, store_secrets
from tests.fakes.oauth_server import rsa_keypair
from tests.procs import ROOT, free_port, serving, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_runner(tmp_path, postgres_url, monkeypatch):
    """The CLI on an instance whose database is `postgres_url` (this test's own database, on either CI pass)."""
    from click.testing import CliRunner

    from govern.cli import _register, cli

    home = tmp_path / "instance"
    home.mkdir()
    monkeypatch.setenv("GOVERN_HOME", str(home))
    monkeypatch.setenv("GOVERN_DATABASE_URL", postgres_url)
    _register()

    class _Runner:
        home_dir = home

        def invoke(self, args, input=None, **kw):
            return CliRunner().invoke(cli, args, input=input, catch_exceptions=False, **kw)

    return _Runner()


def _database(_pg_admin, url: str, *, accepting: bool) -> None:
    name = url.rsplit("/", 1)[-1]
    with _pg_admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if accepting else "false"}'))
        if not accepting:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})


def test_requests_get_503_while_the_database_is_away_and_succeed_once_it_is_back(
        tmp_path, pg_runner, postgres_url, _pg_admin, fake_upstream, resources):
    user_pem, user_jwk = rsa_keypair()
    refresh_token, bob_pem = seed_upstream(fake_upstream)
    apply_landscape(pg_runner, tmp_path, fake_upstream, resources, user_jwk)
    store_secrets(pg_runner, refresh_token, bob_pem)
    result = pg_runner.invoke(["admin", "create-user", "ops-admin", "--role", "admin"],
                              input="a long console passphrase\n")
    assert result.exit_code == 0, result.output
    result = pg_runner.invoke(["admin", "token", "ops-admin"])
    assert result.exit_code == 0, result.output
    admin = result.stdout.strip().splitlines()[-1]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_REDIS")}
    env.update(GOVERN_HOME=str(pg_runner.home_dir), GOVERN_DATABASE_URL=postgres_url, GOVERN_LOG_LEVEL="INFO",
               PYTHONPATH=str(ROOT), GOVERN_PUBLIC_URL=f"http://127.0.0.1:{port}")
    log_path = tmp_path / "gunicorn.log"
    with serving(env, log_path, ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
                 port=port) as gunicorn:
        base = gunicorn.base

        def calls(token: str) -> dict[str, requests.Response]:
            auth = {"Authorization": f"Bearer {token}"}
            return {
                "oauth token": requests.post(base + "/oauth/token", auth=("order-sync", USER_SECRET), timeout=30,
                                             data={"grant_type": "client_credentials", "scope": "orders.read"}),
                "upstream token": requests.post(base + "/api/v1/named-credentials/shop-orders/token", timeout=30,
                                                json={"scope": "orders.read"}, headers=auth),
                "proxy": requests.get(base + "/api/v1/named-credentials/stock-api/proxy/v1/items/1", timeout=30,
                                      headers=auth),
                "api": requests.get(base + "/api/v1/decisions?limit=1", timeout=30,
                                    headers={"Authorization": f"Bearer {admin}"}),
            }

        def govern_token() -> str:
            answer = requests.post(base + "/oauth/token", auth=("order-sync", USER_SECRET), timeout=30,
                                   data={"grant_type": "client_credentials", "scope": "orders.read items.read"})
            assert answer.status_code == 200, answer.text
            return answer.json()["access_token"]

        token = govern_token()
        before = calls(token)
        assert {k: r.status_code for k, r in before.items()} == {
            "oauth token": 200, "upstream token": 200, "proxy": 200, "api": 200}, {k: r.text[:200] for k, r in
                                                                                    before.items()}

        _database(_pg_admin, postgres_url, accepting=False)
        try:
            away = calls(token)
            for what, answer in away.items():
                assert answer.status_code == 503, (what, answer.status_code, answer.text[:300])
                assert int(answer.headers["Retry-After"]) > 0, what
                if what == "oauth token":  # an OAuth client reads RFC 6749's error format, not problem+json
                    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
                    assert answer.json()["error"] == "temporarily_unavailable", answer.text[:300]
                    continue
                assert answer.headers["Content-Type"].startswith("application/problem+json"), what
                # A broker call whose decision cannot be recorded says so (it is refused: no unrecorded access).
                assert answer.json()["code"] in ("database_unavailable", "decision_log_unavailable"), (what, answer.text[:300])
                for driver_text in ("accepting connections", "FATAL", "psycopg", "terminat", postgres_url):
                    assert driver_text not in answer.text, (what, driver_text)
            ready = requests.get(base + "/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable", ready.text
            scraped = requests.get(base + "/metrics", timeout=30)  # what GovernDatabaseDown reads
            assert scraped.status_code == 200, scraped.text[:300]
            assert 'govern_ready_check{check="database"} 0.0' in scraped.text
        finally:
            _database(_pg_admin, postgres_url, accepting=True)

        log = log_path.read_text(errors="replace")
        assert '"msg": "database unavailable"' in log, log[-3000:]
        assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]

        # Back: the same server, no restart (the pool's pre-ping replaces the ended connections).
        after = wait_for(lambda: (lambda c: c if all(r.status_code != 503 for r in c.values()) else None)(
            calls(govern_token())), 30, "answers without 503 once the database is back")
        assert {k: r.status_code for k, r in after.items()} == {k: r.status_code for k, r in before.items()}
