"""Audit report documents: JSON (docs/audit-report.schema.json), CSV, and SARIF 2.1.0
(https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html). HTML is in govern.audit.html."""
from __future__ import annotations

import csv
import io
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import PurePosixPath
from typing import Any

from govern.audit.engine import SEVERITIES, Finding, catalogue

SCHEMA_VERSION = "govern.audit/v1"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


def build_report(*, source: str, generated_at: str, window_days: int, findings: list[Finding],
                 run: dict[str, Any] | None = None, trend: list[dict] | None = None,
                 rightsizing: list[dict] | None = None, imports: list[dict] | None = None,
                 sources: list[dict] | None = None) -> dict[str, Any]:
    open_ = [f for f in findings if f.status == "open"]
    return {
        "schema": SCHEMA_VERSION, "generated_at": generated_at, "source": source, "window_days": window_days,
        "sources": sources or [{"name": source, "kind": source}],
        "summary": {**{s: sum(1 for f in open_ if f.severity == s) for s in SEVERITIES},
                    "suppressed": sum(1 for f in findings if f.status == "suppressed"), "total": len(findings),
                    "by_rule": _by_rule(findings),
                    "files": {k: sum(int(src.get(f"files_{k}", 0)) for src in sources or [])
                              for k in ("imported", "skipped", "failed")}},
        "run": run or {"id": None, "new": [], "resolved": [], "reopened": []},
        "trend": trend or [],
        "rules": [{"id": r.id, "title": r.title, "severity": r.severity, "rationale": r.rationale,
                   "remediation": r.remediation} for r in catalogue().values()],
        "findings": [f.as_dict() for f in findings],
        "rightsizing": rightsizing or [],
        "imports": imports or [],
    }


def _by_rule(findings: list[Finding]) -> dict[str, dict[str, int]]:
    """rule id -> severity -> how many findings (open and suppressed) of that rule have that severity."""
    out: dict[str, dict[str, int]] = {}
    for f in findings:
        out.setdefault(f.rule_id, {}).setdefault(f.severity, 0)
        out[f.rule_id][f.severity] += 1
    return out


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


# GitHub code scanning ranks results by the rule's `security-severity` (a CVSS-like score as text: over 9.0
# critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.0", "low": "2.0", "info": "0.0"}
# docs/audit.md has one section per rule, anchored by its id in lower case (`#gov-access-001`).
DOCS = "docs/audit.md"
AREA_TAGS = {"ACCESS": "access-control", "NET": "network", "OAUTH": "oauth", "ID": "identity", "STALE": "lifecycle",
             "ROT": "rotation", "API": "least-privilege", "USAGE": "least-privilege", "BEHAV": "monitoring",
             "SECRET": "secrets", "GOV": "governance", "VER": "versioning", "META": "metadata",
             "DATA": "data-exfiltration", "LOG": "audit-logs", "IDSEC": "identity-security", "ORG": "org-linkage",
             "EMAIL": "email"}
# Where the file of a location is relative to: the working directory `govern apply` / `govern import` ran in.
SRCROOT = "%SRCROOT%"


def _tags(r: dict[str, Any]) -> list[str]:
    area = r["id"].split("-")[1]
    tags = ["security", AREA_TAGS.get(area, area.lower())]
    if "anti-pattern" in r["rationale"].lower():  # the seed's anti-patterns (what NOT to do)
        tags.append("anti-pattern")
    return tags


def rule_anchor(rule_id: str) -> str:
    return rule_id.lower()


def _version() -> str:
    try:
        return version("govern")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "0+unknown"


def _base_id(source: str) -> str:
    return "SALESFORCE_" + "".join(c if c.isalnum() else "_" for c in source).upper()


def _artifact(loc: dict, info: dict, bases: dict[str, dict]) -> dict[str, Any]:
    """A SARIF artifactLocation that never holds an absolute local path: govern's files and metadata imported
    from inside the working directory are under %SRCROOT%; other metadata is under a base named after its org."""
    file = str(loc["file"]).replace("\\", "/")
    if info.get("kind") == "salesforce":
        root = info.get("root")
        if root:
            bases[SRCROOT] = {"description": {"text": "the working directory govern ran in (the repository root)"}}
            return {"uri": str(PurePosixPath(root) / file), "uriBaseId": SRCROOT}
        base = _base_id(info["name"])
        bases[base] = {"description": {"text": f"the Salesforce metadata directory imported as {info['name']} "
                                               "(`govern import list` shows it)"}}
        return {"uri": file, "uriBaseId": base}
    if PurePosixPath(file).is_absolute():  # applied from outside the working directory: name the file only
        bases["LANDSCAPE_DIR"] = {"description": {"text": "the directory of the governance file `govern apply` read "
                                                          "(outside the working directory it ran in)"}}
        return {"uri": PurePosixPath(file).name, "uriBaseId": "LANDSCAPE_DIR"}
    bases[SRCROOT] = {"description": {"text": "the working directory govern ran in (the repository root)"}}
    return {"uri": file, "uriBaseId": SRCROOT}


def to_sarif(report: dict[str, Any]) -> dict[str, Any]:
    """SARIF 2.1.0 (OASIS), shaped for GitHub code scanning: rules with help, helpUri, tags and
    security-severity; results with a physical location wherever the finding's entity was read from a file."""
    rules = report["rules"]
    index = {r["id"]: i for i, r in enumerate(rules)}
    sources = {s["name"]: s for s in report.get("sources") or []}
    bases: dict[str, dict] = {}
    results = []
    for f in report["findings"]:
        loc = f.get("location")
        location: dict[str, Any] = {"logicalLocations": [{"name": f["subject"], "kind": f["subject_kind"]}]}
        if loc:
            info = sources.get(f.get("source", ""), {"name": f.get("source", ""), "kind": report.get("source", "")})
            location["physicalLocation"] = {"artifactLocation": _artifact(loc, info, bases),
                                            "region": {"startLine": max(int(loc["line"]), 1)}}
        result = {"ruleId": f["rule_id"], "ruleIndex": index[f["rule_id"]], "level": SARIF_LEVEL[f["severity"]],
                  "message": {"text": f["message"]}, "locations": [location],
                  "partialFingerprints": {"govern/v1": f["fingerprint"]},
                  "properties": {"severity": f["severity"], "source": f.get("source", ""), "subject": f["subject"],
                                 "evidence": f["evidence"]}}
        if f["status"] == "suppressed":
            s = f.get("suppression") or {}
            result["suppressions"] = [{"kind": "external", "status": "accepted",
                                       "justification": f"{s.get('justification', '')} ({s.get('ticket', '')}, "
                                                        f"until {s.get('expires_at', '')})"}]
        results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {
            "name": "govern", "version": _version(), "semanticVersion": _version(), "informationUri": DOCS,
            "rules": [{"id": r["id"], "name": r["id"].replace("-", ""),
                       "shortDescription": {"text": r["title"]},
                       "fullDescription": {"text": r["rationale"]},
                       "help": {"text": r["remediation"],
                                "markdown": f"**Remediation.** {r['remediation']}\n\n**Practice.** {r['rationale']}"},
                       "helpUri": f"{DOCS}#{rule_anchor(r['id'])}",
                       "defaultConfiguration": {"level": SARIF_LEVEL[r["severity"]]},
                       "properties": {"severity": r["severity"], "security-severity": SECURITY_SEVERITY[r["severity"]],
                                      "tags": _tags(r)}}
                      for r in rules]}},
        "results": results,
    }
    if bases:
        run["originalUriBaseIds"] = bases
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
