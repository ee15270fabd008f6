"""Adopt an org: `govern import salesforce DIR --to-landscape out.yaml` writes a governance.yaml starting point that
`govern apply --dry-run` accepts, with no secret value, and `# DECIDE:` comments where a human must choose."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.audit.test_salesforce_import import REAL

NS = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
CONSUMER_SECRET = "9F3A6C1E8B2D4F70A5C3E1B9D7F2A4C6E8B0D2F4A6C8E0B2D4F6A8C0E2B4D6F8"


def _secret_values(root: Path) -> set[str]:
    """Every value of an element that holds a secret in Salesforce metadata (what must never be copied)."""
    found = set()
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for tag in ("consumerSecret", "password", "oauthToken", "oauthRefreshToken", "awsAccessSecret"):
                found |= {m.strip() for m in re.findall(rf"<{tag}>([^<]+)</{tag}>", text) if len(m.strip()) >= 6}
            found |= {m.split()[0][:60] for m in re.findall(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]{60,})",
                                                             text)}
    return found


def _adopt(runner, directory: Path, out: Path, name: str) -> str:
    result = runner.invoke(["import", "salesforce", str(directory), "--name", name, "--to-landscape", str(out)])
    assert result.exit_code == 0, result.output
    assert f"landscape={out}" in result.output
    return out.read_text()


def test_the_shared_sample_adopts_and_apply_accepts_it(runner, tmp_path):
    if not REAL.is_dir():
        pytest.skip("shared Salesforce corpus absent")
    out = tmp_path / "adopted.yaml"
    text = _adopt(runner, REAL, out, "shared")

    dry = runner.invoke(["apply", "-f", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "to create" in dry.output and "error" not in dry.output.lower()
    secrets = _secret_values(REAL)
    assert secrets, "the sample carries secrets to look for"
    assert not [s for s in secrets if s in text]
    doc = yaml.safe_load(text)
    # the sample's connected apps became integration users with their scopes; its credentials came along
    users = {u["id"].rsplit("__", 1)[-1]: u for u in doc["integration_users"]}
    assert {"slackapp", "slackapp2"} <= set(users)
    assert "refresh_token" in users["slackapp2"]["scopes"]
    assert len(doc["credentials"]) >= 15 and len(doc["named_credentials"]) >= 15
    named = {n["id"].rsplit("__", 1)[-1]: n for n in doc["named_credentials"]}
    # a new-model named credential names its External Credential's adopted id
    assert named["rewardapi"]["credential"].endswith("__rewardapi")
    assert text.count("# DECIDE:") >= len(doc["systems"])
    # and the adopted landscape is applied for real, then audited
    assert runner.invoke(["apply", "-f", str(out)]).exit_code == 0
    assert runner.invoke(["audit", "--source", "govern", "-o", str(tmp_path / "r.json")]).exit_code == 0


ORG = {
    "externalCredentials/ErpCred.externalCredential-meta.xml": f"""<?xml version="1.0" encoding="UTF-8"?>
<ExternalCredential {NS}>
    <authenticationProtocol>Oauth</authenticationProtocol>
    <externalCredentialParameters>
        <parameterGroup>DefaultGroup</parameterGroup><parameterName>Oauth</parameterName>
        <parameterType>AuthProtocolVariant</parameterType><parameterValue>ClientCredentialsWithClientSecret</parameterValue>
    </externalCredentialParameters>
    <externalCredentialParameters>
        <parameterGroup>DefaultGroup</parameterGroup><parameterName>AuthProviderUrl</parameterName>
        <parameterType>AuthProviderUrl</parameterType><parameterValue>https://erp.example.com/oauth/token</parameterValue>
    </externalCredentialParameters>
    <externalCredentialParameters>
        <parameterGroup>DefaultGroup</parameterGroup><parameterName>scope</parameterName>
        <parameterType>AuthParameter</parameterType><parameterValue>orders.read orders.write</parameterValue>
    </externalCredentialParameters>
    <externalCredentialParameters>
        <parameterGroup>Sync</parameterGroup><parameterName>Sync</parameterName>
        <parameterType>NamedPrincipal</parameterType><sequenceNumber>1</sequenceNumber>
    </externalCredentialParameters>
    <label>ERP</label>
</ExternalCredential>
""",
    "namedCredentials/ErpApi.namedCredential-meta.xml": f"""<?xml version="1.0" encoding="UTF-8"?>
<NamedCredential {NS}>
    <label>ERP API</label>
    <namedCredentialParameters>
        <parameterName>Url</parameterName><parameterType>Url</parameterType>
        <parameterValue>https://erp.example.com/api</parameterValue>
    </namedCredentialParameters>
    <namedCredentialParameters>
        <externalCredential>ErpCred</externalCredential><parameterName>ExternalCredential</parameterName>
        <parameterType>Authentication</parameterType>
    </namedCredentialParameters>
    <namedCredentialType>SecuredEndpoint</namedCredentialType>
</NamedCredential>
""",
    "permissionsets/ErpSync.permissionset-meta.xml": f"""<?xml version="1.0" encoding="UTF-8"?>
<PermissionSet {NS}>
    <description>Calls the ERP as the sync principal</description>
    <externalCredentialPrincipalAccesses>
        <enabled>true</enabled><externalCredentialPrincipal>ErpCred-Sync</externalCredentialPrincipal>
    </externalCredentialPrincipalAccesses>
    <label>ERP sync</label>
</PermissionSet>
""",
    # a set whose principal access is switched off is not adopted
    "permissionsets/Former.permissionset-meta.xml": f"""<?xml version="1.0" encoding="UTF-8"?>
<PermissionSet {NS}>
    <externalCredentialPrincipalAccesses>
        <enabled>false</enabled><externalCredentialPrincipal>ErpCred-Sync</externalCredentialPrincipal>
    </externalCredentialPrincipalAccesses>
    <label>Former</label>
</PermissionSet>
""",
    "connectedApps/ErpConnector.connectedApp-meta.xml": f"""<?xml version="1.0" encoding="UTF-8"?>
<ConnectedApp {NS}>
    <contactEmail>erp-team@example.com</contactEmail>
    <description>The ERP calls Salesforce</description>
    <ipRanges><description>office</description><end>10.1.0.255</end><start>10.1.0.0</start></ipRanges>
    <ipRanges><end>192.168.1.10</end><start>192.168.1.10</start></ipRanges>
    <label>ERP connector</label>
    <oauthConfig>
        <consumerKey>3MVG9ExampleConsumerKey</consumerKey>
        <consumerSecret>{CONSUMER_SECRET}</consumerSecret>
        <scopes>Api</scopes>
        <scopes>RefreshToken</scopes>
    </oauthConfig>
    <oauthPolicy><ipRelaxation>ENFORCE</ipRelaxation><refreshTokenPolicy>infinite</refreshTokenPolicy></oauthPolicy>
    <permissionSetName>ErpSync</permissionSetName>
</ConnectedApp>
""",
}


def test_credentials_principal_access_and_connected_apps_are_adopted(runner, tmp_path):
    org = tmp_path / "acme"
    for rel, text in ORG.items():
        (org / rel).parent.mkdir(parents=True, exist_ok=True)
        (org / rel).write_text(text)
    out = tmp_path / "acme.yaml"
    text = _adopt(runner, org, out, "acme")
    assert CONSUMER_SECRET not in text

    doc = yaml.safe_load(text)
    cred = next(c for c in doc["credentials"] if c["id"] == "erpcred")
    assert cred["protocol"] == "oauth2_client_credentials" and cred["token_url"] == "https://erp.example.com/oauth/token"
    assert cred["scopes"] == ["orders.read", "orders.write"] and cred["principals"] == [{"name": "Sync"}]
    assert doc["named_credentials"] == [{"id": "erpapi", "credential": "erpcred", "url": "https://erp.example.com/api"}]
    assert [ps["id"] for ps in doc["permission_sets"]] == ["erpsync"]
    assert doc["permission_sets"][0]["grants"] == [{"named_credential": "erpapi", "principal": "Sync"}]
    (user,) = doc["integration_users"]
    assert user["id"] == "erpconnector" and user["owner"] == "erp-team@example.com"
    assert user["ip_ranges"] == ["10.1.0.0/24", "192.168.1.10/32"]
    assert user["scopes"] == ["api", "refresh_token"] and user["permission_sets"] == ["erpsync"]
    # the decisions left to a human are marked above the entity they concern
    lines = text.splitlines()
    at = lines.index("  - id: erpconnector")
    above = [line for line in lines[:at] if line.startswith("  # DECIDE:")][-3:]
    assert any("refresh_token" in line for line in above) and any("source_system" in line for line in above)
    assert any("methods and paths" in line for line in lines)

    dry = runner.invoke(["apply", "-f", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "plan: 6 to create" in dry.output  # two systems, a credential, a named credential, a set, a user


def test_an_unwritable_landscape_file_is_one_line_and_exit_2(runner, tmp_path):
    org = tmp_path / "acme"
    rel = "permissionsets/ErpSync.permissionset-meta.xml"
    (org / rel).parent.mkdir(parents=True)
    (org / rel).write_text(ORG[rel])
    result = runner.invoke(["import", "salesforce", str(org), "--to-landscape", str(tmp_path / "missing" / "x.yaml")])
    assert result.exit_code == 2
    assert "error: cannot write" in result.output and "Traceback" not in result.output
