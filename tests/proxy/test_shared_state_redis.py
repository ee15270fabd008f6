"""Budget and breaker are shared across govern processes through Redis: two Services instances
(as two processes would have) draw from one counter and see one circuit."""
from __future__ import annotations

import pytest

from tests.factories import make_landscape
from tests.proxy.conftest import CALLER, build_env


@pytest.mark.redis
def test_two_instances_share_the_budget_and_the_breaker(settings, upstream, redis_url, redis_prefix):
    shared = settings.with_overrides(redis_url=redis_url, redis_prefix=redis_prefix)
    a = build_env(shared, upstream)
    b = build_env(shared, upstream)
    try:
        assert a.services.cache.kind == "redis"
        make_landscape(a.services, url=upstream.url + "/api", daily_api_budget=3)
        a.configure(retry={"attempts": 1}, circuit_breaker={"failures": 2, "reset": 60})
        assert a.client.get(a.url("x"), headers=CALLER).status_code == 200
        assert b.client.get(b.url("x"), headers=CALLER).status_code == 200
        assert a.client.get(a.url("x"), headers=CALLER).status_code == 200
        r = b.client.get(b.url("x"), headers=CALLER)  # the 4th call overall, made by the other instance
        assert r.status_code == 429 and r.get_json()["code"] == "budget_exhausted"
        assert a.proxy.budget.used("erp") == b.proxy.budget.used("erp") == 3
        # The alert fired once, in whichever instance reached 80% first.
        assert len(a.notifier.events) + len(b.notifier.events) == 1

        a.configure(daily_api_budget=None)
        upstream.fail_next(2, status=503)
        assert a.client.get(a.url("x"), headers=CALLER).status_code == 503
        assert b.client.get(b.url("x"), headers=CALLER).status_code == 503
        # Two failures, one in each instance: the shared circuit is open for both.
        for env in (a, b):
            r = env.client.get(env.url("x"), headers=CALLER)
            assert r.get_json()["code"] == "circuit_open"
    finally:
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=redis_prefix + "*"):
            client.delete(key)
        a.services.close()
        b.services.close()
