"""A grant's object permissions hold whatever the named credential's base URL (issue #15). Before, with a
URL already ending in `/services/data/vNN.N`, the proxy read the object from the caller's path only, found
none, and GET sobjects/Opportunity/006 passed a grant listing only Account and Contact."""
from __future__ import annotations

import pytest

from tests.config_as_code.world import find


@pytest.mark.parametrize("base, prefix", [("/services/data/v61.0", ""), ("", "services/data/v61.0/")])
def test_objects_outside_the_grant_are_refused_whatever_the_base_path(world, base, prefix):
    find(world.doc, "named_credentials", "stock-api")["url"] = world.resources.url + base
    grant = find(world.doc, "permission_sets", "shop-reader")["grants"][1]
    grant["objects"] = {"Account": {"read": True}, "Contact": {"read": True}}
    world.apply()
    r = world.proxy("stock-api", prefix + "sobjects/Opportunity/006")
    assert r.status_code == 403 and r.get_json()["code"] == "access_denied", r.get_data(as_text=True)
    assert world.resources.count == 0
    r = world.proxy("stock-api", prefix + "sobjects/Account/001")
    assert r.status_code == 200
    assert world.resources.last().path == "/services/data/v61.0/sobjects/Account/001"
    denied = [d for d in world.decisions() if d.action == "proxy" and not d.allowed]
    assert [d.resource_object for d in denied] == ["Opportunity"]
