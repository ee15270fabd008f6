"""`retry:`, `circuit_breaker:`, `timeout:`, `max_body:` of a named credential take effect as written in
governance.yaml (issue #15). Before, apply stored `attempts`/`backoff_seconds`/`failures`/`reset_seconds` while
the proxy read `max_attempts`/`base_delay_seconds`/`failure_threshold`/`reset_timeout_seconds`, so
`retry: {attempts: 1}` still made 3 upstream requests and the breaker kept its defaults."""
from __future__ import annotations

from tests.config_as_code.world import find


def _nc(world, name="stock-api"):
    return find(world.doc, "named_credentials", name)


def test_retry_attempts_from_yaml_bound_the_upstream_requests(world):
    _nc(world)["retry"] = {"attempts": 1}
    world.apply()
    world.resources.fail_next(1, status=503)
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 503
    assert world.resources.count == 1  # was 2 (the 503, then the default's retry)

    _nc(world)["retry"] = {"attempts": 2, "backoff": "400ms", "max_backoff": "1s"}
    world.apply()
    world.resources.fail_next(1, status=503)
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 200 and world.resources.count == 3
    assert world.sleeps == [0.4]  # full jitter with random() == 1: min(max_backoff, backoff * 2**0)


def test_circuit_breaker_failures_and_reset_from_yaml(world):
    _nc(world)["retry"] = {"attempts": 1}
    _nc(world)["circuit_breaker"] = {"failures": 2, "reset": "5m"}
    world.apply()
    world.resources.fail_next(5, status=503)
    assert world.proxy("stock-api", "items/1").status_code == 503
    assert world.proxy("stock-api", "items/1").status_code == 503
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 503 and r.get_json()["code"] == "circuit_open"  # default would be 5 failures
    assert r.headers["Retry-After"] == "300" and world.resources.count == 2
    world.clock.advance(301)  # half-open after `reset`: one probe goes through
    assert world.proxy("stock-api", "items/1").status_code == 503 and world.resources.count == 3


def test_redirects_from_yaml_are_followed(world):
    world.resources.redirect_next(world.resources.url + "/stock/items/2")
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 302 and world.resources.count == 1  # by default the caller gets the redirect
    _nc(world)["retry"] = {"redirects": 1}
    world.apply()
    world.resources.redirect_next(world.resources.url + "/stock/items/2")
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 200 and world.resources.last().path == "/stock/items/2" and world.resources.count == 3


def test_body_limit_and_timeout_from_yaml(world):
    _nc(world)["max_body"] = "1KB"
    _nc(world)["timeout"] = "300ms"
    _nc(world)["retry"] = {"attempts": 1}
    world.apply()
    assert world.proxy("stock-api", "items", "POST", data=b"x" * 2048,
                       headers={"Content-Type": "text/plain"}).status_code == 413
    assert world.proxy("stock-api", "items", "POST", data=b"x" * 1000,
                       headers={"Content-Type": "text/plain"}).status_code == 201
    world.resources.slow_next(1, delay=5.0)
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 504 and r.get_json()["code"] == "upstream_timeout"


def test_unknown_retry_or_breaker_keys_are_refused_at_apply(world):
    _nc(world)["retry"] = {"max_attempts": 1}
    _nc(world)["circuit_breaker"] = {"failure_threshold": 2}
    errors = world.apply_errors(world.doc)
    assert "max_attempts" in errors and "failure_threshold" in errors


def test_a_stored_row_that_does_not_parse_is_an_error_at_load(world):
    """Rows come from apply; one changed behind govern's back (here: the old key spelling) fails loudly."""
    import sqlalchemy as sa

    from govern.store.db import session_scope
    from govern.store.tables import NamedCredential

    with session_scope(world.services.sessions) as s:
        s.execute(sa.update(NamedCredential).where(NamedCredential.external_id == "stock-api")
                  .values(retry={"max_attempts": 1}))
    r = world.proxy("stock-api", "items/1")
    assert r.status_code == 500 and r.get_json()["code"] == "configuration_error"
    assert world.resources.count == 0


def test_export_then_apply_is_a_no_op_for_the_typed_fields(world):
    from govern.landscape import apply_document, export_document

    _nc(world)["retry"] = {"attempts": 2, "backoff": "250ms", "max_backoff": "2s", "max_retry_after": "3s",
                           "redirects": 1}
    _nc(world)["circuit_breaker"] = {"failures": 3, "reset": "90s", "window": "2m"}
    cred = [c for c in world.doc["credentials"] if c["id"] == "shop-cc"][0]
    cred.update(resource=["https://a.example/"], token_params={"tenant": "acme"}, leeway="15s")
    world.doc["systems"][1]["contract"] = {"maintenance_windows": [{"day": "sat", "start": "22:00", "end": "24:00"}]}
    world.apply()
    exported = export_document(world.services.sessions)
    assert "max_retry_after: 3s" in exported and "leeway: 15s" in exported and "end: '24:00'" in exported
    plan = apply_document(world.services.sessions, exported, "exported.yaml")
    assert not plan.has_changes, [c.line() for c in plan.changes]
