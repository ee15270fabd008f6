"""RFC 8707 `resource` and extra token-request parameters, from governance.yaml to the upstream's token
endpoint (issue #15). Before, `resource:` was refused as an unknown key and nothing but `audience` (which a
standard provider ignores) could be added to a token request."""
from __future__ import annotations

import pytest

from tests.config_as_code.world import find


def test_resources_and_token_params_reach_the_token_endpoint(world):
    cred = find(world.doc, "credentials", "shop-cc")
    cred["resource"] = ["https://api.shop.example/orders", "https://files.shop.example/"]
    cred["token_params"] = {"tenant": "acme", "organization": 42}
    cred["audience"] = "https://api.shop.example"
    world.apply()
    assert world.upstream_token().status_code == 200
    form = world.upstream.forms[-1]
    assert form["resource"] == ["https://api.shop.example/orders", "https://files.shop.example/"]
    assert form["tenant"] == ["acme"] and form["organization"] == ["42"]
    assert form["audience"] == ["https://api.shop.example"] and form["scope"] == ["orders.read"]


def test_one_resource_may_be_a_plain_string(world):
    find(world.doc, "credentials", "shop-cc")["resource"] = "https://api.shop.example/"
    world.apply()
    assert world.upstream_token().status_code == 200
    assert world.upstream.forms[-1]["resource"] == ["https://api.shop.example/"]


@pytest.mark.parametrize("name", ["client_secret", "password", "assertion", "refresh_token", "subject_token",
                                  "Client-Secret", "api_key"])
def test_secret_looking_token_params_are_refused_at_apply(world, name):
    find(world.doc, "credentials", "shop-cc")["token_params"] = {name: "x"}
    errors = world.apply_errors(world.doc)
    # the loader's secret scan or the token_params rule: either way named, and pointed at the vault
    assert f"{name!r} looks like a secret" in errors and "govern secrets put" in errors


@pytest.mark.parametrize("name", ["grant_type", "scope", "resource", "client_id"])
def test_parameters_govern_sets_are_refused_at_apply(world, name):
    find(world.doc, "credentials", "shop-cc")["token_params"] = {name: "x"}
    assert f"token parameter {name!r} is set by" in world.apply_errors(world.doc)


@pytest.mark.parametrize("value", ["not a uri", "https://api.shop.example/#frag", "/relative"])
def test_a_resource_must_be_an_absolute_uri_without_fragment(world, value):
    find(world.doc, "credentials", "shop-cc")["resource"] = [value]
    assert "RFC 8707" in world.apply_errors(world.doc)


def test_token_request_fields_on_a_static_credential_are_refused(world):
    find(world.doc, "credentials", "stock-key")["resource"] = ["https://stock.example/"]
    assert "apply to OAuth 2.0 token requests" in world.apply_errors(world.doc)
