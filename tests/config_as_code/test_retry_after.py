"""Every 503 carries Retry-After (RFC 9110 section 15.6.4), as a property of the error class (issue #15).
Before, the token endpoint's and the proxy's `upstream_unavailable` came without one."""
from __future__ import annotations

from govern.errors import GovernError, UpstreamUnavailable


def test_an_upstream_token_endpoint_failure_is_503_with_retry_after(world):
    world.upstream.inject("5xx", times=None)
    r = world.upstream_token()
    assert r.status_code == 503 and r.get_json()["code"] == "upstream_unavailable"
    assert int(r.headers["Retry-After"]) >= 1

    r = world.proxy("shop-orders", "orders")  # the proxy needs the same token first
    assert r.status_code == 503 and r.get_json()["code"] == "upstream_unavailable"
    assert int(r.headers["Retry-After"]) >= 1


def test_an_unreachable_upstream_is_503_with_retry_after(world):
    world.resources.stop()
    try:
        r = world.proxy("stock-api", "items/1")
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    finally:
        world.resources.start()


def test_no_503_lacks_it_and_an_own_wait_is_kept():
    class SomeOutage(GovernError):
        status = 503

    assert SomeOutage().headers == {"Retry-After": "5"}
    assert UpstreamUnavailable("x", headers={"Retry-After": "30"}).headers == {"Retry-After": "30"}
    assert "Retry-After" not in GovernError("x").headers

    def every(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from every(sub)

    for cls in every(GovernError):
        if cls.status == 503:
            instance = cls.__new__(cls)
            instance.headers = {}
            assert instance.headers.get("Retry-After"), cls


def test_readyz_503_has_retry_after(world):
    world.services.health_checks["broken"] = lambda: (_ for _ in ()).throw(RuntimeError("down"))
    r = world.client.get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
