"""The IP guardrail refuses ranges broader than a minimum prefix, not only 0.0.0.0/0 and ::/0 (issue #14):
`0.0.0.0/1` opens half of the IPv4 internet. The landscape is applied with `govern apply`, the user's secret set
with `govern secrets put`, and the guardrail is seen where a user sees it: the answer of `POST /oauth/token` +
`POST /api/v1/named-credentials/{name}/token`, and the finding of `govern audit` (GOV-NET-002), which must agree.
Positive controls: ranges at the minimum and narrower are allowed."""
from __future__ import annotations

import json

import pytest

from tests.security.hostile_fixtures import apply_landscape, issue_token

FORBID = "forbid:require-ip-restrictions"


def ask_upstream_token(client, remote: str):
    token = issue_token(client, remote=remote)
    assert token.status_code == 200, token.get_json()
    return client.post("/api/v1/named-credentials/erp-api/token", json={},
                       headers={"Authorization": f"Bearer {token.get_json()['access_token']}"},
                       environ_base={"REMOTE_ADDR": remote})


def decision_of(response) -> str:
    """allowed, or the deciding rule of a refusal (a successful decision may still fail upstream)."""
    if response.status_code == 403:
        return response.get_json()["rule"]
    return "allowed"


def audit_finding(runner, tmp_path) -> dict | None:
    out = tmp_path / "audit.json"
    result = runner.invoke(["audit", "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    return next((f for f in report["findings"] if f["rule_id"] == "GOV-NET-002" and f["subject"] == "order-sync"),
                None)


# (ranges in governance.yaml, a caller address inside them, the guardrail's verdict, GOV-NET-002's verdict)
CASES = [
    # positive controls
    ("10.20.0.0/16", "10.20.0.7", "allowed", None),
    ("10.20.0.7/32", "10.20.0.7", "allowed", None),
    ("2001:db8:1::/48", "2001:db8:1::7", "allowed", None),
    # broad but inside the guardrail: an audit finding only
    ("10.0.0.0/8", "10.20.0.7", "allowed", "advice"),
    ("10.0.0.0/12", "10.1.0.7", "allowed", "advice"),
    ("2001:db8::/32", "2001:db8::7", "allowed", "advice"),
    # refused by the guardrail, and flagged as such by the audit
    ("0.0.0.0/0", "10.20.0.7", FORBID, "refused"),
    ("0.0.0.0/1", "10.20.0.7", FORBID, "refused"),
    ("128.0.0.0/1", "192.0.2.7", FORBID, "refused"),
    ("0.0.0.0/7", "1.2.3.4", FORBID, "refused"),
    ("8.0.0.0/7", "9.9.9.9", FORBID, "refused"),
    ("10.20.0.0/16, 0.0.0.0/2", "10.20.0.7", FORBID, "refused"),  # one broad range among narrow ones
    ("0.0.0.0/4", "10.20.0.7", FORBID, "refused"),
    ("::/0", "2001:db8::7", FORBID, "refused"),
    ("::/1", "2001:db8::7", FORBID, "refused"),
    ("2000::/3", "2001:db8::7", FORBID, "refused"),
    ("2001:c00::/23", "2001:db8::7", FORBID, "refused"),
    ("10.20.0.0/16, 2000::/16", "10.20.0.7", FORBID, "refused"),  # broad IPv6 refuses IPv4 callers too
]


@pytest.mark.parametrize(("ranges", "remote", "decision", "audit"), CASES)
def test_guardrail_and_audit_agree_on_broad_ranges(runner, tmp_path, client, ranges, remote, decision, audit):
    apply_landscape(runner, tmp_path, ranges=ranges)
    response = ask_upstream_token(client, remote)
    assert decision_of(response) == decision, response.get_json()
    if decision != "allowed":
        assert response.mimetype == "application/problem+json" and response.get_json()["code"] == "access_denied"
    finding = audit_finding(runner, tmp_path)
    if audit is None:
        assert finding is None
    else:
        assert finding is not None and finding["severity"] == "high"
        assert ("refused_by_guardrail" in finding["evidence"]) == (audit == "refused")


@pytest.fixture
def strict(settings, monkeypatch):
    """An instance whose operator tightened the minimums: GOVERN_MIN_IPV4_PREFIX=24, GOVERN_MIN_IPV6_PREFIX=64."""
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings

    monkeypatch.setenv("GOVERN_MIN_IPV4_PREFIX", "24")  # read by the CLI (govern audit)
    monkeypatch.setenv("GOVERN_MIN_IPV6_PREFIX", "64")
    tightened = load_settings(None, home=settings.home, database_url=settings.database_url)
    assert (tightened.min_ipv4_prefix, tightened.min_ipv6_prefix) == (24, 64)
    services = build_services(tightened)
    yield create_app({"TESTING": True}, services=services).test_client()
    services.close()


@pytest.mark.parametrize(("ranges", "remote", "decision"), [
    ("10.20.0.0/24", "10.20.0.7", "allowed"),
    ("10.20.0.0/23", "10.20.0.7", FORBID),
    ("10.20.0.0/16", "10.20.0.7", FORBID),
    ("2001:db8:1:2::/64", "2001:db8:1:2::7", "allowed"),
    ("2001:db8:1::/48", "2001:db8:1::7", FORBID),
])
def test_the_minimum_is_configurable_and_the_audit_follows_it(runner, tmp_path, strict, ranges, remote, decision):
    apply_landscape(runner, tmp_path, ranges=ranges)
    assert decision_of(ask_upstream_token(strict, remote)) == decision
    finding = audit_finding(runner, tmp_path)
    refused = finding is not None and "refused_by_guardrail" in finding["evidence"]
    assert refused == (decision == FORBID)


@pytest.mark.parametrize("value", ["0", "33", "-1", "eight", "\u0668", ""])
def test_a_bad_minimum_is_refused_at_startup(settings, value):
    from govern.config import load_settings
    from govern.errors import ConfigurationError

    environ = {"GOVERN_MIN_IPV4_PREFIX": value}
    if value == "":
        assert load_settings(environ, home=settings.home).min_ipv4_prefix == 8  # unset: the default
        return
    with pytest.raises(ConfigurationError, match="GOVERN_MIN_IPV4_PREFIX"):
        load_settings(environ, home=settings.home)
