"""Audit report documents: JSON (docs/audit-report.schema.json), CSV, and SARIF 2.1.0
(https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html). HTML is in govern.audit.html."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from govern.audit.engine import SEVERITIES, Finding, catalogue

SCHEMA_VERSION = "govern.audit/v1"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


def build_report(*, source: str, generated_at: str, window_days: int, findings: list[Finding],
                 run: dict[str, Any] | None = None, trend: list[dict] | None = None,
                 rightsizing: list[dict] | None = None, imports: list[dict] | None = None) -> dict[str, Any]:
    open_ = [f for f in findings if f.status == "open"]
    return {
        "schema": SCHEMA_VERSION, "generated_at": generated_at, "source": source, "window_days": window_days,
        "summary": {**{s: sum(1 for f in open_ if f.severity == s) for s in SEVERITIES},
                    "suppressed": sum(1 for f in findings if f.status == "suppressed"), "total": len(findings)},
        "run": run or {"id": None, "new": [], "resolved": [], "reopened": []},
        "trend": trend or [],
        "rules": [{"id": r.id, "title": r.title, "severity": r.severity, "rationale": r.rationale,
                   "remediation": r.remediation} for r in catalogue().values()],
        "findings": [f.as_dict() for f in findings],
        "rightsizing": rightsizing or [],
        "imports": imports or [],
    }


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str)


CSV_COLUMNS = ("fingerprint", "rule_id", "severity", "status", "subject_kind", "subject", "title", "message", "file",
               "line", "remediation")


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for f in report["findings"]:
        loc = f.get("location") or {}
        row = [f["fingerprint"], f["rule_id"], f["severity"], f["status"], f["subject_kind"], f["subject"], f["title"],
               f["message"], loc.get("file", ""), loc.get("line", ""), f["remediation"]]
        # neutralise spreadsheet formulas (CSV injection) in values that come from metadata
        w.writerow(["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for v in row])
    return buf.getvalue()


def to_sarif(report: dict[str, Any], base_uri: str | None = None) -> dict[str, Any]:
    rules = report["rules"]
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    for f in report["findings"]:
        loc = f.get("location")
        if loc:
            physical = {"artifactLocation": {"uri": loc["file"], **({"uriBaseId": "SRCROOT"} if base_uri else {})},
                        "region": {"startLine": max(int(loc["line"]), 1)}}
        else:  # govern's own landscape: point at the entity, as a logical location
            physical = None
        location = {"logicalLocations": [{"name": f["subject"], "kind": f["subject_kind"]}]}
        if physical:
            location["physicalLocation"] = physical
        result = {"ruleId": f["rule_id"], "ruleIndex": index[f["rule_id"]], "level": SARIF_LEVEL[f["severity"]],
                  "message": {"text": f["message"]}, "locations": [location],
                  "partialFingerprints": {"govern/v1": f["fingerprint"]},
                  "properties": {"severity": f["severity"], "subject": f["subject"], "evidence": f["evidence"]}}
        if f["status"] == "suppressed":
            s = f.get("suppression") or {}
            result["suppressions"] = [{"kind": "external", "status": "accepted",
                                       "justification": f"{s.get('justification', '')} ({s.get('ticket', '')}, "
                                                        f"until {s.get('expires_at', '')})"}]
        results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "govern", "version": "0.1.0",
                            "rules": [{"id": r["id"], "name": r["id"].replace("-", ""),
                                       "shortDescription": {"text": r["title"]},
                                       "fullDescription": {"text": r["rationale"]},
                                       "help": {"text": r["remediation"]},
                                       "defaultConfiguration": {"level": SARIF_LEVEL[r["severity"]]},
                                       "properties": {"severity": r["severity"]}} for r in rules]}},
        "results": results,
    }
    if base_uri:
        run["originalUriBaseIds"] = {"SRCROOT": {"uri": base_uri.rstrip("/") + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
