"""Bulkheads (issue #16): a system's contract in governance.yaml limits the proxy's concurrent calls to it.
When its slots are taken by slow calls, the next call waits briefly, then gets 503
`upstream_concurrency_limit` with Retry-After, while calls to other systems go on; `/metrics` shows it."""
from __future__ import annotations

import threading

import requests

from tests.procs import wait_for
from tests.e2e.conftest import LANDSCAPE, apply_landscape


def test_a_slow_system_gets_its_slots_and_no_more(live, runner, tmp_path, resources, fake_upstream):
    import tests.e2e.conftest as e2e

    limited = LANDSCAPE.replace("  - {{id: stock, name: Stock, kind: inventory, scopes: [items.read]}}",
                                "  - {{id: stock, name: Stock, kind: inventory, scopes: [items.read],\n"
                                "      contract: {{max_concurrent_calls: 2}}}}")
    limited = limited.replace("retry: {{attempts: 1}}}}", "retry: {{attempts: 1}}, timeout: 60s}}")
    assert limited != LANDSCAPE
    original, e2e.LANDSCAPE = e2e.LANDSCAPE, limited
    try:
        from tests.fakes.oauth_server import rsa_keypair

        apply_landscape(runner, tmp_path, fake_upstream, resources, rsa_keypair()[1])
    finally:
        e2e.LANDSCAPE = original
    token = live.govern_token(scope="orders.read items.read")
    resources.slow_next(2, delay=60)
    answers: list[int] = []
    slow = [threading.Thread(target=lambda: answers.append(live.proxy(token, "stock-api", "v1/items/1").status_code))
            for _ in range(2)]
    [t.start() for t in slow]
    # Both slow calls are at the upstream, holding the system's two slots.
    wait_for(lambda: resources.count >= 2, 60, "two calls in flight")

    refused = live.proxy(token, "stock-api", "v1/items/2")
    assert refused.status_code == 503 and refused.json()["code"] == "upstream_concurrency_limit"
    assert refused.headers["Retry-After"] == "1" and refused.json()["limit"] == 2
    assert resources.count == 2  # the refused call never reached the system
    assert live.proxy(token, "shop-orders", "api/orders").status_code == 200  # other systems go on

    metrics = requests.get(live.base + "/metrics", timeout=30).text
    assert 'govern_proxy_concurrency_limit{system="stock"} 2.0' in metrics
    assert 'govern_proxy_calls_in_flight{system="stock"} 2.0' in metrics
    assert 'govern_proxy_bulkhead_rejections_total{system="stock"} 1.0' in metrics

    resources.release_slow()
    [t.join(60) for t in slow]
    assert answers == [200, 200]
    assert live.proxy(token, "stock-api", "v1/items/3").status_code == 200  # the slots are free again
    assert 'govern_proxy_calls_in_flight{system="stock"} 0.0' in requests.get(live.base + "/metrics", timeout=30).text
