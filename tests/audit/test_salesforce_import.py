"""Salesforce metadata import: our own corpus (DX and mdapi layouts), malformed files, and the real corpus."""
from __future__ import annotations

from pathlib import Path

import pytest

from govern.audit.engine import run_rules
from govern.audit.salesforce.importer import import_directory

HERE = Path(__file__).parent
REAL = Path("/work/shared/corpus/salesforce")

# (rule, subject) that MUST be found in tests/audit/corpus, and (rule, subject) that must NOT be
SF_POSITIVE = {
    ("GOV-ACCESS-001", "Integration_Admin"), ("GOV-ACCESS-001", "Admin_Lite"),
    ("GOV-ACCESS-002", "Setup_Reader"), ("GOV-ACCESS-002", "Ops"), ("GOV-ACCESS-003", "Integration_Admin"),
    ("GOV-ACCESS-004", "Integration_Admin"), ("GOV-NET-001", "NoIp"), ("GOV-SECRET-005", "Bad_App#cert"), ("GOV-NET-002", "Integration"),
    ("GOV-NET-003", "Bad_App"), ("GOV-OAUTH-001", "Bad_App"), ("GOV-OAUTH-003", "Bad_App"),
    ("GOV-OAUTH-004", "Bad_App"), ("GOV-OAUTH-006", "Bad_App"), ("GOV-SECRET-001", "Bad_App"),
    ("GOV-SECRET-001", "Legacy_Pwd"), ("GOV-SECRET-001", "Slack/Webhook"), ("GOV-SECRET-001", "Api_Key"),
    ("GOV-SECRET-002", "Legacy_Pwd"), ("GOV-SECRET-003", "Legacy_Pwd#legacy"), ("GOV-SECRET-004", "Plain_App#certificate"),
    ("GOV-VER-001", "Unversioned#version"), ("GOV-VER-002", "Legacy_Pwd#deprecated"), ("GOV-ID-003", "Oauth_Shared"),
    ("GOV-META-001", "dx/force-app/main/default/permissionsets/Integration_Admin.permissionset-meta.xml"),
}
SF_NEGATIVE = {
    ("GOV-ACCESS-001", "Order_Sync"), ("GOV-ACCESS-001", "Ops"),  # muted ManageUsers
    ("GOV-ACCESS-001", "Integration"),  # ModifyAllData enabled=false
    ("GOV-ACCESS-002", "Order_Sync"), ("GOV-ACCESS-003", "Order_Sync"), ("GOV-ACCESS-004", "Reader"),
    ("GOV-NET-001", "Locked"), ("GOV-SECRET-005", "Good_App#cert"), ("GOV-NET-004", "Modern#tls"), ("GOV-NET-002", "Locked"), ("GOV-NET-003", "Good_App"), ("GOV-OAUTH-001", "Good_App"),
    ("GOV-OAUTH-003", "Good_App"), ("GOV-OAUTH-004", "Good_App"), ("GOV-OAUTH-006", "Good_App"),
    ("GOV-SECRET-001", "Good_App"), ("GOV-SECRET-001", "Modern"), ("GOV-SECRET-001", "Api_Key_Ref"),
    ("GOV-SECRET-002", "Modern"), ("GOV-SECRET-003", "Slack/Webhook#legacy"), ("GOV-SECRET-004", "Good_App#certificate"),
    ("GOV-VER-001", "Modern#version"), ("GOV-VER-002", "Modern#deprecated"), ("GOV-ID-003", "Per_User"),
    ("GOV-META-001", "dx/force-app/main/default/permissionsets/Order_Sync.permissionset-meta.xml"),
}


@pytest.fixture(scope="module")
def corpus():
    return import_directory(HERE / "corpus")


def _pairs(findings):
    return {(f.rule_id, f.subject) for f in findings}


def test_corpus_imports_every_kind_in_both_layouts(corpus):
    imported = {(o.file.split("/")[0], o.kind) for o in corpus.outcomes if o.status == "imported"}
    assert {k for layout, k in imported if layout == "dx"} >= {
        "PermissionSet", "PermissionSetGroup", "MutingPermissionSet", "ConnectedApp", "NamedCredential",
        "ExternalCredential"}
    assert {k for layout, k in imported if layout == "mdapi"} >= {
        "Profile", "PermissionSet", "ConnectedApp", "NamedCredential", "ExternalCredential"}
    assert corpus.errors == 0
    assert "Slack/Webhook" in corpus.model.named_credentials  # %2F in the file name decoded
    m = corpus.model
    assert m.permission_sets["Integration_Admin"].objects["Account"].fields == {"Rating": "edit"}
    assert m.permission_sets["Ops"].members == ["Setup_Reader", "Admin_Lite"]
    assert m.permission_sets["Ops"].muting == ["Mute_Admin"]
    assert m.effective_permissions(m.permission_sets["Ops"]) == {"ViewSetup"}
    assert m.permission_sets["Integration"].system_permissions == ["ApiEnabled"]  # enabled=false dropped
    assert m.permission_sets["Integration"].login_ip_ranges == [("0.0.0.0", "255.255.255.255")]
    assert m.connected_apps["Bad_App"].refresh_token_policy == "infinite"
    assert m.connected_apps["Bad_App"].callback_urls == ["http://integrations.example.com/callback"]
    assert m.named_credentials["Legacy_Pwd"].legacy and m.named_credentials["Legacy_Pwd"].protocol == "Password"
    assert m.named_credentials["Modern"].credential == "Per_User"
    assert [(p.name, p.kind) for p in m.credentials["Per_User"].principals] == [("PerUser", "per_user")]


def test_corpus_positive_and_negative_cases(corpus):
    found = _pairs(run_rules(corpus.model))
    assert SF_POSITIVE - found == set()
    assert SF_NEGATIVE & found == set()


def test_salesforce_findings_point_at_file_and_line(corpus):
    by = {(f.rule_id, f.subject): f for f in run_rules(corpus.model)}
    f = by[("GOV-ACCESS-001", "Integration_Admin")]
    assert f.location.file == "dx/force-app/main/default/permissionsets/Integration_Admin.permissionset-meta.xml"
    assert f.location.line == 22  # <name>ModifyAllData</name>
    app = HERE / "corpus" / by[("GOV-NET-003", "Bad_App")].location.file
    line = next(i for i, t in enumerate(app.read_text().splitlines(), 1) if "<ipRelaxation>" in t)
    assert by[("GOV-NET-003", "Bad_App")].location.line == line


def test_malformed_and_doctype_files_fail_alone(tmp_path):
    result = import_directory(HERE / "broken")
    outcome = {o.file: o for o in result.outcomes}
    assert outcome["Good.permissionset-meta.xml"].status == "imported"
    assert outcome["Broken.permissionset-meta.xml"].status == "error"
    assert outcome["Broken.permissionset-meta.xml"].message.startswith("Broken.permissionset-meta.xml:4:")
    assert "DOCTYPE" in outcome["Evil.permissionset-meta.xml"].message
    assert "Good" in result.model.permission_sets


@pytest.fixture(scope="module")
def real():
    if not REAL.is_dir():
        pytest.skip("shared Salesforce corpus absent")
    return import_directory(REAL)


def test_every_real_file_imports(real):
    files = [p for p in REAL.rglob("*") if p.is_file() and p.name not in ("README.md", "SOURCES.tsv")]
    assert len([o for o in real.outcomes if o.status == "imported"]) == len(files)
    assert real.errors == 0


def test_real_corpus_findings_a_reviewer_expects(real):
    found = {(f.rule_id, f.subject.rsplit("__", 1)[-1]) for f in run_rules(real.model)}
    expected = {
        # connected apps from the Slack starter kits: full scope, refresh tokens valid until revoked, secret inline
        ("GOV-OAUTH-001", "slackApp2"), ("GOV-OAUTH-001", "slackApp"), ("GOV-OAUTH-004", "slackApp2"),
        ("GOV-SECRET-001", "slackApp2"), ("GOV-OAUTH-003", "slackApp2"),
        # legacy named credentials with username/password inline
        ("GOV-SECRET-002", "Stripe"), ("GOV-SECRET-001", "Stripe"), ("GOV-SECRET-002", "Payeezy"),
        ("GOV-SECRET-002", "ApexToken"), ("GOV-SECRET-003", "AWS_Secret#legacy"),
        # a Slack webhook URL (the URL is the secret) stored in the named credential
        ("GOV-SECRET-001", "Example_Slack_Webhook_Named_Credential"),
        # the Admin profile: admin-equivalent permissions, toxic pairs, API without IP ranges
        ("GOV-ACCESS-001", "Admin"), ("GOV-ACCESS-003", "Admin"), ("GOV-NET-001", "Admin"),
        # an OAuth external credential whose one named principal authorises every caller
        ("GOV-ID-003", "Example_Slack_OAuth_External_Credential"), ("GOV-ID-003", "Google_Drive_OAuth2"),
        # an expired certificate signed with SHA-1 on the app that holds refresh tokens forever
        ("GOV-SECRET-005", "slackApp2#cert"),
        # callouts over plain HTTP
        ("GOV-NET-004", "MockBin#tls"),
    }
    assert expected - found == set()
    # {!$Credential...} merge fields are references into the vault, not secrets
    assert ("GOV-SECRET-001", "Google_Places_API") not in found
    # the starter-kit templates hold `{SECRET}` placeholders, not secrets
    assert ("GOV-SECRET-001", "slackApp") not in found and ("GOV-SECRET-005", "slackApp#cert") not in found
    assert not any(r == "GOV-VER-002" for r, _ in found)  # Google's /v1 is not a Salesforce version
