"""The audit of examples/governance.yaml: the smells marked `SMELL` in its comments are found, on exactly
their subjects, and the clean parts raise nothing high or critical."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "governance.yaml"

# rule id -> the subjects it must name (and no others)
SMELLS = {
    "GOV-API-003": {"salesforce-soap"},  # SOAP named credential nothing grants
    "GOV-SECRET-002": {"salesforce-soap-legacy"},  # ... behind a basic (password) credential
    "GOV-NET-002": {"finance-reconciliation", "salesforce-invoice-reader"},  # 10.0.0.0/8, Salesforce's /14
    "GOV-ACCESS-001": {"crm-admin-backfill"},  # ModifyAllData
    "GOV-ACCESS-003": {"crm-admin-backfill"},  # ApiEnabled + ModifyAllData
    "GOV-ACCESS-004": {"crm-admin-backfill"},  # modify_all / view_all on Account
}


def _smell_subjects() -> set[str]:
    """The entry each `SMELL` comment marks: the id on the same line, the next entry for a comment at
    entry level (`  # SMELL`), the enclosing entry for a comment inside one. The header (column 0) names none."""
    lines = EXAMPLE.read_text().splitlines()
    ident = re.compile(r"\s*- id: ([\w-]+)")
    out = set()
    for i, line in enumerate(lines):
        if "SMELL" not in line or line.startswith("#"):
            continue
        m = ident.match(line)
        if m:
            out.add(m.group(1))
            continue
        inside = len(line) - len(line.lstrip()) > 2
        seq = reversed(lines[:i]) if inside else lines[i + 1:]
        out.add(next(m.group(1) for m in map(ident.match, seq) if m))
    return out


def test_example_smells_are_found_and_the_rest_is_clean(services, runner, tmp_path):
    result = runner.invoke(["apply", "-f", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "r.json"
    result = runner.invoke(["audit", "--out", str(out)])
    assert result.exit_code == 0, result.output
    findings = json.loads(out.read_text())["findings"]
    by_rule: dict[str, set[str]] = {}
    for f in findings:
        by_rule.setdefault(f["rule_id"], set()).add(f["subject"])
    for rule_id, subjects in SMELLS.items():
        assert by_rule.get(rule_id) == subjects, (rule_id, by_rule.get(rule_id))
    # every SMELL marker in the file is one of these subjects, and each subject is marked
    marked = _smell_subjects()
    assert marked == {"salesforce-soap-legacy", "salesforce-soap", "finance-reconciliation",
                      "salesforce-invoice-reader", "crm-admin-backfill"}
    assert set().union(*SMELLS.values()) == marked
    net = next(f for f in findings if f["rule_id"] == "GOV-NET-002" and f["subject"] == "finance-reconciliation")
    assert net["evidence"]["ranges"] == ["10.0.0.0/8"]
    # nothing else is high or critical
    serious = {(f["rule_id"], f["subject"]) for f in findings if f["severity"] in ("critical", "high")}
    assert serious == {(r, s) for r, subjects in SMELLS.items() for s in subjects
                       if r not in ("GOV-API-003",)}  # GOV-API-003 is medium
    # a fresh instance: everything was created just now, so nothing is judged on (lack of) use
    assert not any(f["rule_id"] in ("GOV-STALE-001", "GOV-STALE-002") or f["rule_id"].startswith("GOV-USAGE-00")
                   for f in findings)
    # the gate: the critical smells fail a CI gate at critical; nothing fails a gate above it
    assert runner.invoke(["audit", "--fail-on", "critical", "--out", str(tmp_path / "g")]).exit_code == 1
