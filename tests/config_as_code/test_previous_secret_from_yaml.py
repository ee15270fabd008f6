"""A previous client secret is tried only within the credential's rotation overlap, and a success with it
is a WARNING and a metric (issue #15). Before, with no overlap configured, the previous version was tried
forever: a wrong new client secret still gave 200 (the upstream saw a 401, then the old secret) and nobody
was told."""
from __future__ import annotations

import logging

from tests.config_as_code.world import CLIENT_SECRET, find

METRIC = 'govern_upstream_previous_secret_used_total{credential="shop-cc"}'


def _metric(world) -> str:
    lines = world.client.get("/metrics").get_data(as_text=True).splitlines()
    return next((line.split()[-1] for line in lines if line.startswith(METRIC)), "absent")


def test_without_an_overlap_a_wrong_new_secret_fails(world):
    world.put_secret("shop-cc", "client_secret", "a-wrong-new-secret")
    r = world.upstream_token()
    assert r.status_code == 502 and r.get_json()["code"] == "upstream_invalid_client"  # was 200
    assert world.upstream.count("client_credentials") == 1  # the old secret was not tried


def test_within_the_overlap_the_previous_secret_works_and_is_reported(world, caplog):
    find(world.doc, "credentials", "shop-cc")["rotation"] = {"every": "90d", "overlap": "24h"}
    world.apply()
    world.put_secret("shop-cc", "client_secret", "a-wrong-new-secret")
    with caplog.at_level(logging.WARNING, logger="govern.broker.upstream"):
        assert world.upstream_token().status_code == 200
    assert world.upstream.count("client_credentials") == 2  # the new secret refused, then the previous one
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "previous" in r.getMessage()]
    assert warnings and warnings[0].credential == "shop-cc"
    assert CLIENT_SECRET not in caplog.text and "a-wrong-new-secret" not in caplog.text
    assert _metric(world) == "1.0"

    world.clock.advance(25 * 3600)  # the overlap is over (and the cached token expired)
    r = world.upstream_token()
    assert r.status_code == 502 and r.get_json()["code"] == "upstream_invalid_client"
    assert _metric(world) == "1.0"


def test_a_right_new_secret_needs_no_fallback(world):
    find(world.doc, "credentials", "shop-cc")["rotation"] = {"every": "90d", "overlap": "24h"}
    world.apply()
    world.upstream.register_client("shop-client", secret=[CLIENT_SECRET, "the-right-new-secret"],
                                   scope="orders.read orders.write")
    world.put_secret("shop-cc", "client_secret", "the-right-new-secret")
    assert world.upstream_token().status_code == 200
    assert world.upstream.count("client_credentials") == 1 and _metric(world) == "absent"
