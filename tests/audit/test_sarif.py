"""Issue #19: SARIF that code scanning shows well. The document validates against the official SARIF 2.1.0 schema
(tests/audit/data/sarif-schema-2.1.0.json, from github.com/oasis-tcs/sarif-spec, sarif-2.1/schema); every rule has
help, a helpUri into docs/audit.md whose anchor exists, tags and a security-severity; every result has a physical
location: the governance.yaml line its entity was applied from, or the Salesforce metadata file relative to a
documented base, never an absolute local path."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
SHARED = Path("/work/shared/corpus/salesforce")
SCHEMA = json.loads((HERE / "data" / "sarif-schema-2.1.0.json").read_text())
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.0", "low": "2.0", "info": "0.0"}


@pytest.fixture
def sarif(services, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # as in CI: govern runs at the repository root
    assert runner.invoke(["apply", "-f", "examples/governance.yaml"]).exit_code == 0
    assert runner.invoke(["import", "salesforce", "tests/audit/corpus", "--name", "in-repo"]).exit_code == 0
    if not SHARED.is_dir():
        pytest.fail("the shared Salesforce sample is missing")
    assert runner.invoke(["import", "salesforce", str(SHARED), "--name", "shared"]).exit_code == 0
    out = tmp_path / "r.sarif"
    result = runner.invoke(["audit", "--format", "sarif", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def _resolve(run: dict, phys: dict) -> Path:
    art = phys["artifactLocation"]
    base = art.get("uriBaseId")
    if base == "%SRCROOT%":
        return ROOT / art["uri"]
    assert base and base in run["originalUriBaseIds"], art
    assert base == "SALESFORCE_SHARED"
    return SHARED / art["uri"]


def test_sarif_validates_against_the_official_schema(sarif):
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    errors = sorted(jsonschema.Draft4Validator(SCHEMA).iter_errors(sarif), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    broken = json.loads(json.dumps(sarif))
    broken["runs"][0]["results"][0]["level"] = "fatal"  # the validator can fail
    assert list(jsonschema.Draft4Validator(SCHEMA).iter_errors(broken))


def test_every_rule_has_severity_help_and_an_anchor_that_exists(sarif):
    docs = (ROOT / "docs" / "audit.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', docs))
    driver = sarif["runs"][0]["tool"]["driver"]
    assert driver["informationUri"] == "docs/audit.md" and driver["version"]
    for rule in driver["rules"]:
        props = rule["properties"]
        assert props["security-severity"] == SECURITY_SEVERITY[props["severity"]], rule["id"]
        assert "security" in props["tags"] and len(props["tags"]) >= 2
        path, _, anchor = rule["helpUri"].partition("#")
        assert path == "docs/audit.md" and anchor == rule["id"].lower() and anchor in anchors, rule["id"]
        assert rule["help"]["text"] and rule["fullDescription"]["text"].startswith(("§", "Anti-pattern"))


def test_every_result_points_at_its_file_and_line_and_no_absolute_path(sarif):
    run = sarif["runs"][0]
    text = json.dumps(run.get("originalUriBaseIds", {})) + json.dumps(
        [r["locations"] for r in run["results"]])
    assert str(ROOT) not in text and str(SHARED) not in text and "file://" not in text
    seen = set()
    example = (ROOT / "examples" / "governance.yaml").read_text().splitlines()
    for res in run["results"]:
        phys = res["locations"][0]["physicalLocation"]
        path = _resolve(run, phys)
        assert path.is_file(), phys
        line = phys["region"]["startLine"]
        assert 1 <= line <= len(path.read_text(encoding="utf-8").splitlines())
        source = res["properties"]["source"]
        seen.add(source)
        if source == "govern":
            assert phys["artifactLocation"]["uri"] == "examples/governance.yaml"
            subject = res["properties"]["subject"]
            kind = res["locations"][0]["logicalLocations"][0]["kind"]
            if kind in ("system", "credential", "named_credential", "integration_user", "permission_set") and \
                    not re.search(r"[#/]", subject):
                assert example[line - 1].split(" #")[0].strip() == f"- id: {subject}", (res["ruleId"], subject, example[line - 1])
        elif source == "in-repo":
            assert phys["artifactLocation"]["uri"].startswith("tests/audit/corpus/")
    assert seen == {"govern", "in-repo", "shared"}
