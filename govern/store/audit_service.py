"""The audit use cases: load a model (govern's tables, or Salesforce metadata), run the rules and the
right-sizing, store the run (trend, suppressions) and build the report. Edges (CLI, API) call these."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from govern.audit.engine import run_rules
from govern.audit.model import AuditModel, AuditPolicy
from govern.audit.report import build_report
from govern.audit.rightsizing import governance_yaml, recommendations
from govern.audit.salesforce.importer import ImportResult, import_directory
from govern.errors import ValidationFailed
from govern.store.audit_loader import load_model
from govern.store.audit_runs import record_run, trend
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
                    "permission_sets": r.permission_sets, "assignments": r.assignments})
    return recs, out


def import_salesforce(directory: str | Path, now: dt.datetime) -> ImportResult:
    path = Path(directory)
    if not path.is_dir():
        raise ValidationFailed([{"location": "DIR", "message": f"{directory} is not a directory"}])
    return import_directory(path, now)


def run_audit(services, *, source: str = "db", directory: str | None = None, window_days: int = 30,
              store: bool = True) -> AuditOutcome:
    now = services.clock.now()
    settings = services.settings
    policy = AuditPolicy(window_days=window_days, guardrail_min_ipv4_prefix=settings.min_ipv4_prefix,
                         guardrail_min_ipv6_prefix=settings.min_ipv6_prefix)
    imported = None
    if source == "salesforce":
        if not directory:
            raise ValidationFailed([{"location": "--source", "message": "salesforce needs a DIR"}])
        imported = import_salesforce(directory, now)
        model = imported.model
        model.policy = policy
        source_name = "salesforce"
    else:
        with session_scope(services.sessions) as session:
            model = load_model(session, now, policy)
        source_name = "govern"
    findings = run_rules(model)
    recs, rightsizing = _rightsizing(model)
    recommendation = governance_yaml(model, recs) if recs else None
    run_info, history = None, []
    if store:
        with session_scope(services.sessions) as session:
            extra = {"files_imported": imported.imported, "files_failed": imported.errors} if imported else {}
            run = record_run(session, source_name, findings, now, extra)
            run_info = {"id": run.id, "new": run.new, "resolved": run.resolved, "reopened": run.reopened}
            history = trend(session, source_name)
    imports = [dataclasses.asdict(o) for o in imported.outcomes] if imported else []
    report = build_report(source=source_name, generated_at=now.isoformat(), window_days=window_days, findings=findings,
                          run=run_info, trend=history, rightsizing=rightsizing, imports=imports)
    return AuditOutcome(report, recommendation, imported)
