"""SARIF from the audit of the shared real Salesforce corpus: each result points at the element it is about."""
from __future__ import annotations

import json

import pytest

from tests.audit.test_salesforce_import import REAL

# rule id -> text that the pointed-at line must contain
EXPECTED_LINE = {
    "GOV-ACCESS-001": "<name>",  # the <name> of the userPermissions
    "GOV-ACCESS-002": "<name>",
    "GOV-ACCESS-003": "<name>",
    "GOV-ACCESS-004": "AllRecords>true<",  # viewAllRecords / modifyAllRecords
    "GOV-OAUTH-001": "<scopes>Full</scopes>",
    "GOV-OAUTH-003": "<scopes>RefreshToken</scopes>",
    "GOV-OAUTH-004": "<refreshTokenPolicy>infinite",
    "GOV-NET-004": "<endpoint>http://",
    "GOV-SECRET-002": "<protocol>Password</protocol>",
    "GOV-SECRET-003": "<protocol>",
    "GOV-SECRET-005": "<certificate>",
}


def test_sarif_locations_point_at_the_offending_element(runner, tmp_path):
    if not REAL.is_dir():
        pytest.skip("shared Salesforce corpus absent")
    assert runner.invoke(["import", "salesforce", str(REAL)]).exit_code == 0
    out = tmp_path / "sf.sarif"
    result = runner.invoke(["audit", "--source", "salesforce", str(REAL), "--format", "sarif", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())["runs"][0]["results"]
    checked = set()
    for r in results:
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "SALESFORCE_SALESFORCE"  # REAL is outside the working directory
        lines = (REAL / loc["artifactLocation"]["uri"]).read_text(encoding="utf-8").splitlines()
        text = lines[loc["region"]["startLine"] - 1]
        if r["ruleId"] in EXPECTED_LINE:
            assert EXPECTED_LINE[r["ruleId"]] in text, (r["ruleId"], loc, text)
            checked.add(r["ruleId"])
    assert len(checked) >= 8  # the corpus exercises most of them
