"""Issue #4 "Single flight" end to end: 200 concurrent HTTP requests for an expired token, over 4 gunicorn
workers sharing PostgreSQL and Redis, make exactly one upstream token call.

Everything is real: `/oauth/token` and `POST /api/v1/named-credentials/{name}/token` (authz), the local secret
store shared by the processes through the database (secrets), the upstream half; only the upstream is a fake.
"""
from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
import requests

from govern.broker.upstream.token_cache import cache_key
from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from tests.factories import make_landscape, put_credential_secret
from tests.procs import ROOT, Gunicorn
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
USER_SECRET = "e2e-user-client-secret-value"


def test_200_http_requests_over_4_gunicorn_workers_make_one_upstream_call(tmp_path, postgres_url, redis_url,
                                                                          redis_prefix, fake_upstream):
    import redis

    from govern.bootstrap import build_services
    from govern.config import load_settings

    home = tmp_path / "instance"
    home.mkdir()
    settings = load_settings({}, home=home, database_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix)
    svc = build_services(settings)
    gunicorn = None
    try:
        assert svc.secret_store is not None, "bootstrap wires a secret store shared by processes"
        for step in svc.init_steps:
            step(svc)
        names = make_landscape(svc, token_url=fake_upstream.token_url, url=fake_upstream.url + "/api",
                               client_secret=USER_SECRET)
        fake_upstream.register_client("erp-client", secret="e2e-upstream-secret", scope="orders.read")
        put_credential_secret(svc, names["credential"], "client_secret", "e2e-upstream-secret")
        key = cache_key(names["named_credential"], names["principal"], ("orders.read",))
        expired = UpstreamToken(Secret("at_expired"), "Bearer", svc.clock.now() - dt.timedelta(seconds=5))
        svc.cache.set(key, svc.upstream_tokens.tokens.seal(key, expired)[0], 60)
        fake_upstream.inject("delay", delay=0.5, times=None)

        env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": postgres_url,
               "GOVERN_REDIS_URL": redis_url, "GOVERN_REDIS_PREFIX": redis_prefix, "GOVERN_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT)}
        gunicorn = Gunicorn.start(env, tmp_path / "gunicorn.log",
                                  ["--workers", "4", "--worker-class", "gthread", "--threads", "16"])
        base = gunicorn.base
        resp = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                             auth=(names["user"], USER_SECRET), timeout=30)
        assert resp.status_code == 200, resp.text
        govern_token = resp.json()["access_token"]

        barrier = threading.Barrier(200)
        results: list[tuple[int, str | None]] = []
        lock = threading.Lock()

        def call():
            barrier.wait()
            r = requests.post(f"{base}/api/v1/named-credentials/{names['named_credential']}/token",
                              json={"scope": "orders.read"}, headers={"Authorization": f"Bearer {govern_token}"},
                              timeout=60)
            with lock:
                results.append((r.status_code, r.json().get("access_token") if r.status_code == 200 else r.text))

        threads = [threading.Thread(target=call) for _ in range(200)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert [s for s, _ in results].count(200) == 200, [r for r in results if r[0] != 200][:3]
        assert len({t for _, t in results}) == 1
        assert fake_upstream.count("client_credentials") == 1
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        svc.close()
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=redis_prefix + "*"):
            client.delete(k)
