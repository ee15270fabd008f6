"""Upstream tokens are served from the cache for most of their life (issue #15). Before, the fixed 60 s
leeway equalled a 60 s token's whole lifetime, so every request called the upstream."""
from __future__ import annotations

import logging

from tests.config_as_code.world import CLIENT_ID, find


def _requests_within_a_minute(world, n=20, step=2.5):
    for _ in range(n):
        r = world.upstream_token()
        assert r.status_code == 200, r.get_data(as_text=True)
        world.clock.advance(step)


def test_a_60_second_token_is_fetched_once_for_20_requests_in_a_minute(world):
    world.upstream.client_ttls[CLIENT_ID] = 60
    _requests_within_a_minute(world)  # 20 requests over 50 s: the default leeway is min(60 s, 10% of 60 s)
    assert world.upstream.count("client_credentials") == 1  # was 20
    world.clock.advance(5)  # 55 s after the fetch: past 54 s, the token is refreshed
    assert world.upstream_token().status_code == 200
    assert world.upstream.count("client_credentials") == 2


def test_leeway_per_credential_and_a_warning_when_it_eats_half_the_lifetime(world, caplog):
    world.upstream.client_ttls[CLIENT_ID] = 60
    find(world.doc, "credentials", "shop-cc")["leeway"] = "40s"
    world.apply()
    with caplog.at_level(logging.WARNING, logger="govern.broker.upstream"):
        assert world.upstream_token().status_code == 200
    assert any("leeway" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    world.clock.advance(19)
    assert world.upstream_token().status_code == 200 and world.upstream.count("client_credentials") == 1
    world.clock.advance(2)  # 21 s: past 60 - 40
    assert world.upstream_token().status_code == 200 and world.upstream.count("client_credentials") == 2


def test_an_hour_token_keeps_the_60_second_cap(world):
    world.upstream.client_ttls[CLIENT_ID] = 3600
    assert world.upstream_token().status_code == 200
    world.clock.advance(3539)
    assert world.upstream_token().status_code == 200 and world.upstream.count("client_credentials") == 1
    world.clock.advance(2)  # 3541 s: within the last 60 s
    assert world.upstream_token().status_code == 200 and world.upstream.count("client_credentials") == 2
