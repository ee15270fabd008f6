"""`govern policies validate`, and the decider's grant matching rules."""
from __future__ import annotations

from pathlib import Path

from govern.domain.access_rules import (object_access_allowed, path_matches, resolve_source_ip,
                                        salesforce_object, ip_in_ranges)

REPO_POLICIES = Path(__file__).resolve().parents[2] / "govern" / "policy" / "policies"


def test_shipped_policies_validate(runner):
    result = runner.invoke(["policies", "validate", str(REPO_POLICIES)])
    assert result.exit_code == 0, result.output
    for pid in ("no-admin-equivalent-grants", "require-ip-restrictions", "no-full-or-wildcard-scopes",
                "cap-token-lifetime", "condition:time_window", "condition:max_requests_per_minute",
                "condition:source_cidrs"):
        assert f"{pid}: OK" in result.output


def test_invalid_policy_fails_with_exit_2(runner, tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "govern.cedarschema").write_text((REPO_POLICIES / "govern.cedarschema").read_text())
    (d / "good.cedar").write_text((REPO_POLICIES / "040_cap_token_lifetime.cedar").read_text())
    (d / "bad.cedar").write_text('@id("typo")\nforbid (principal, action, resource) when { principal.no_such_attr };\n')
    result = runner.invoke(["policies", "validate", str(d)])
    assert result.exit_code == 2
    assert "cap-token-lifetime: OK" in result.output and "typo: ERROR" in result.output
    (d / "bad.cedar").write_text("forbid (principal, action, resource) when { context.permitted };\n")
    result = runner.invoke(["policies", "validate", str(d)])
    assert result.exit_code == 2 and "@id" in result.output


def test_policies_dir_comes_from_the_environment(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("GOVERN_POLICIES_DIR", str(tmp_path / "missing"))
    result = runner.invoke(["policies", "validate"])
    assert result.exit_code == 2 and "missing" in result.output + (result.stderr if result.stderr_bytes else "")


def test_path_globs():
    assert path_matches("/services/data/*/sobjects/**", "/services/data/v60.0/sobjects/Account/001")
    assert path_matches("/services/data/*/sobjects/**", "/services/data/v60.0/sobjects")
    assert not path_matches("/services/data/*/sobjects/*", "/services/data/v60.0/sobjects/Account/001")
    assert not path_matches("/api/*", "/api/a/b")
    assert path_matches("/**", "/anything/at/all")


def test_salesforce_objects_and_fields():
    objects = {"Order": {"read": True, "create": True, "edit": True, "fields": {"Status": "edit", "Amount": "read"}}}
    assert salesforce_object("/services/data/v60.0/sobjects/Order/801xx") == "Order"
    assert object_access_allowed(objects, "Order", "GET", ["Status", "Amount"])
    assert object_access_allowed(objects, "Order", "PATCH", ["Status"])
    assert not object_access_allowed(objects, "Order", "PATCH", ["Amount"])  # read-only field
    assert not object_access_allowed(objects, "Order", "DELETE", [])
    assert not object_access_allowed(objects, "Account", "GET", [])


def test_source_ip_and_ranges():
    from ipaddress import ip_network

    trusted = (ip_network("10.0.0.0/8"),)
    assert resolve_source_ip("203.0.113.1", "127.0.0.1", trusted) == "203.0.113.1"
    assert resolve_source_ip("10.0.0.1", "1.1.1.1, 2.2.2.2, 10.0.0.9", trusted) == "2.2.2.2"
    assert resolve_source_ip("10.0.0.1", "not-an-ip", trusted) == "10.0.0.1"
    assert ip_in_ranges("::ffff:127.0.0.1", ["127.0.0.0/8"]) and not ip_in_ranges("127.0.0.1", [])


def test_authorization_settings_from_the_environment(tmp_path):
    import pytest

    from govern.config import load_settings
    from govern.errors import ConfigurationError

    s = load_settings({"GOVERN_POLICIES_DIR": str(tmp_path), "GOVERN_ACCESS_TOKEN_LIFETIME_SECONDS": "300"})
    assert s.policies_dir == tmp_path and s.access_token_lifetime_seconds == 300
    with pytest.raises(ConfigurationError):
        load_settings({"GOVERN_ACCESS_TOKEN_LIFETIME_SECONDS": "0"})
