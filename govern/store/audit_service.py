"""The audit use cases: load a model (govern's tables, or Salesforce metadata), run the rules and the
right-sizing, store the run (trend, suppressions) and build the report. Edges (CLI, API) call these."""
from __future__ import annotations

import dataclasses
import json
import datetime as dt
from pathlib import Path
from typing import Any

from govern.audit.engine import SEVERITY_RANK, catalogue, run_rules
from govern.audit.model import AuditModel, AuditPolicy
from govern.audit.report import build_report
from govern.audit.rightsizing import governance_yaml, recommendations
from govern.audit.salesforce.importer import ImportResult, import_directory
from govern.errors import ValidationFailed
from govern.store.audit_loader import load_model
from govern.store.audit_runs import load_report, record_run, trend
from govern.store.audit_sources import (GOVERN_SOURCE, describe, get_import, list_imports, load_import,
                                        relative_root)
from govern.store.db import session_scope


@dataclasses.dataclass
class AuditOutcome:
    report: dict[str, Any]
    recommendation: dict[str, Any] | None
    import_result: ImportResult | None = None


def _rightsizing(model: AuditModel):
    recs = recommendations(model)
    out = []
    for r in recs:
        out.append({"user": r.user, "judged": r.judged, "reason": r.reason, "window_days": r.window_days,
                    "unused": [dataclasses.asdict(u) for u in r.unused], "proof": r.proof,
                    "permission_sets": r.permission_sets, "assignments": r.assignments,
                    "time_window": r.time_window.as_dict() if r.time_window is not None else None})
    return recs, out


def import_salesforce(directory: str | Path, now: dt.datetime) -> ImportResult:
    path = Path(directory)
    if not path.is_dir():
        raise ValidationFailed([{"location": "DIR", "message": f"{directory} is not a directory"}])
    return import_directory(path, now)


def source_names(services, source: str | None = None, directory: str | None = None) -> list[str]:
    """The sources `run_audit` will audit: a metadata directory alone (named `source`, else `salesforce`),
    the one source named, or every source: govern's landscape and each imported org."""
    if directory:
        return [source or "salesforce"]
    with session_scope(services.sessions) as session:
        if source == GOVERN_SOURCE:
            return [GOVERN_SOURCE]
        if source:
            return [get_import(session, source).name]
        return [GOVERN_SOURCE] + [r.name for r in list_imports(session)]


def audit_steps(sources: int = 1) -> int:
    """How many steps run_audit reports to its `progress` callback: loading, each rule of each source,
    right-sizing, recording."""
    return len(catalogue()) * sources + 3


@dataclasses.dataclass
class _Source:
    name: str
    model: AuditModel
    info: dict[str, Any]
    files: list[dict[str, Any]]


def _load_sources(services, now, policy, source, directory) -> tuple[list[_Source], ImportResult | None]:
    if directory:
        imported = import_salesforce(directory, now)
        model = imported.model
        model.policy, model.name = policy, source or "salesforce"
        files = [dataclasses.asdict(o) for o in imported.outcomes]
        info = {"name": model.name, "kind": "salesforce", "directory": str(directory), "root": relative_root(directory),
                "files_imported": imported.imported, "files_skipped": sum(1 for f in files if f["status"] == "skipped"),
                "files_failed": imported.errors}
        return [_Source(model.name, model, info, files)], imported
    out = []
    with session_scope(services.sessions) as session:
        if source in (None, GOVERN_SOURCE):
            model = load_model(session, now, policy)
            model.name = GOVERN_SOURCE
            out.append(_Source(GOVERN_SOURCE, model, {"name": GOVERN_SOURCE, "kind": "govern"}, []))
        rows = list_imports(session) if source is None else [] if source == GOVERN_SOURCE else [get_import(session, source)]
        for row in rows:
            out.append(_Source(row.name, load_import(row, now, policy), describe(row), list(row.files or [])))
    return out, None


def run_audit(services, *, source: str | None = None, directory: str | None = None, window_days: int = 30,
              store: bool = True, progress=None) -> AuditOutcome:
    """Audit the sources (see `source_names`), store one run holding its report, and return the report."""
    progress = progress or (lambda step: None)
    now = services.clock.now()
    settings = services.settings
    policy = AuditPolicy(window_days=window_days, guardrail_min_ipv4_prefix=settings.min_ipv4_prefix,
                         guardrail_min_ipv6_prefix=settings.min_ipv6_prefix)
    sources, imported = _load_sources(services, now, policy, source, directory)
    progress("loaded")
    findings = []
    for src in sources:
        findings += run_rules(src.model, progress=progress)
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.rule_id, f.source, f.subject))
    own = next((s.model for s in sources if s.model.source == "govern"), None)
    recs, rightsizing = _rightsizing(own) if own is not None else ([], [])
    progress("right-sized")
    recommendation = governance_yaml(own, recs) if own is not None and recs else None
    names = [s.name for s in sources]
    files = [{**f, "source": s.name} for s in sources for f in s.files]
    label = names[0] if len(names) == 1 else "all"

    def report(run_info=None, history=None):
        return build_report(source=", ".join(names), generated_at=now.isoformat(), window_days=window_days,
                            findings=findings, run=run_info, trend=history, rightsizing=rightsizing, imports=files,
                            sources=[s.info for s in sources])

    if store:
        with session_scope(services.sessions) as session:
            extra = {"files_imported": imported.imported, "files_failed": imported.errors} if imported else {}
            run = record_run(session, label, findings, now, extra, sources=names)
            doc = report({"id": run.id, "new": run.new, "resolved": run.resolved, "reopened": run.reopened},
                         trend(session, names))
            doc = run.report = _plain(doc)
    else:
        doc = _plain(report())
    progress("recorded")
    return AuditOutcome(doc, recommendation, imported)


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """The report as JSON data (dates as ISO text), so a fresh report and a stored one render the same."""
    return json.loads(json.dumps(doc, default=str))


def stored_report(services, run_id: int | None = None) -> dict[str, Any]:
    """The report of a stored run (the latest by default), as `run_audit` made it."""
    with session_scope(services.sessions) as session:
        return load_report(session, run_id)
