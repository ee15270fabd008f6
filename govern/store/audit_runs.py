"""Store audit runs and findings (trend: new, resolved, reopened since the last run) and suppressions."""
from __future__ import annotations

import datetime as dt
import uuid
from fnmatch import fnmatchcase

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from govern.audit.engine import SEVERITIES, Finding as FindingResult, catalogue
from govern.errors import NotFound, ValidationFailed
from govern.store.tables import AuditRun, Finding, Suppression


def active_suppressions(session: Session, today: dt.date) -> list[Suppression]:
    return list(session.execute(sa.select(Suppression).where(col(Suppression.expires_at) >= today)).scalars())


def _suppression_for(sups: list[Suppression], f: FindingResult) -> Suppression | None:
    for s in sups:
        if s.rule_id == f.rule_id and (s.subject == f.subject or fnmatchcase(f.subject, s.subject)):
            return s
    return None


def record_run(session: Session, source: str, findings: list[FindingResult], now: dt.datetime,
               extra_counts: dict | None = None, sources: list[str] | None = None) -> AuditRun:
    """Store one run of `sources` (default: just `source`, the run's label); mark suppressed findings; compare
    with the findings these sources had: what is no longer found is resolved, other sources' findings stay."""
    today = now.date()
    sources = sources or [source]
    sups = active_suppressions(session, today)
    run = AuditRun(started_at=now, source=source[:50], sources=sources)
    session.add(run)
    session.flush()
    existing = {f.external_id: f for f in session.execute(
        sa.select(Finding).where(col(Finding.source).in_(sources))).scalars()}
    source_fps = set(existing)
    missing = [f.fingerprint for f in findings if f.fingerprint not in existing]
    for i in range(0, len(missing), 500):  # rows last seen by another source's run (rare), in a few queries
        for seen in session.execute(sa.select(Finding).where(col(Finding.external_id).in_(missing[i:i + 500]))).scalars():
            existing.setdefault(seen.external_id, seen)
    new: list[str] = []
    reopened: list[str] = []
    current = set()
    for f in findings:
        s = _suppression_for(sups, f)
        if s is not None:
            f.status = "suppressed"
            f.suppression = {"owner": s.owner, "justification": s.justification, "ticket": s.ticket,
                             "expires_at": s.expires_at.isoformat()}
        current.add(f.fingerprint)
        row = existing.get(f.fingerprint)
        if row is None:
            row = Finding(external_id=f.fingerprint, first_seen_at=now, rule_id=f.rule_id, severity=f.severity,
                          subject_kind=f.subject_kind, subject=f.subject[:500], title=f.message[:500])
            session.add(row)
            new.append(f.fingerprint)
        elif row.status == "resolved" or (row.status == "suppressed" and f.status == "open"):
            # fixed then back, or its suppression expired: the finding reopens
            reopened.append(f.fingerprint)
        row.rule_id, row.severity, row.subject_kind, row.subject = f.rule_id, f.severity, f.subject_kind, f.subject[:500]
        row.source = (f.source or source)[:200]
        row.title = f.message[:500]
        row.evidence = {**f.evidence, "_location": f.as_dict()["location"], "_suppression": f.suppression}
        row.remediation = f.remediation[:4000]
        row.status, row.last_seen_at, row.last_run_id, row.resolved_at = f.status, now, run.id, None
    resolved = []
    for fp in source_fps - current:
        row = existing[fp]
        if row.status != "resolved":
            row.status, row.resolved_at, row.last_run_id = "resolved", now, run.id
            resolved.append(fp)
    counts = {sev: sum(1 for f in findings if f.severity == sev and f.status == "open") for sev in SEVERITIES}
    counts["suppressed"] = sum(1 for f in findings if f.status == "suppressed")
    counts.update(extra_counts or {})
    run.counts, run.new, run.resolved, run.reopened = counts, new, resolved, reopened
    run.finished_at = now
    session.flush()
    return run


def trend(session: Session, sources: str | list[str], limit: int = 20) -> list[dict]:
    """The last `limit` runs that audited any of `sources`, oldest first."""
    wanted = {sources} if isinstance(sources, str) else set(sources)
    rows = []
    for r in session.execute(sa.select(AuditRun).order_by(col(AuditRun.id).desc()).limit(limit * 10)).scalars():
        if wanted & set(r.sources or [r.source]):
            rows.append(r)
            if len(rows) == limit:
                break
    return [{"run_id": r.id, "at": r.started_at.isoformat(), "counts": r.counts, "new": len(r.new or []),
             "resolved": len(r.resolved or []), "reopened": len(r.reopened or [])} for r in reversed(list(rows))]


def add_suppression(session: Session, rule_id: str, subject: str, owner: str, justification: str, ticket: str,
                    until: dt.date, today: dt.date, created_by: str | None = None) -> Suppression:
    errors = []
    if rule_id not in catalogue():
        errors.append({"location": "rule", "message": f"unknown rule {rule_id}"})
    for name, value in (("owner", owner), ("justification", justification), ("ticket", ticket), ("subject", subject)):
        if not (value or "").strip():
            errors.append({"location": name, "message": "is required"})
    if until <= today:
        errors.append({"location": "until", "message": "must be in the future"})
    if errors:
        raise ValidationFailed(errors)
    row = Suppression(external_id=f"sup-{uuid.uuid4().hex[:12]}", rule_id=rule_id, subject=subject, owner=owner,
                      justification=justification, ticket=ticket, expires_at=until, created_by=created_by)
    session.add(row)
    session.flush()
    return row


def list_suppressions(session: Session) -> list[Suppression]:
    return list(session.execute(sa.select(Suppression).order_by(col(Suppression.expires_at))).scalars())


def load_report(session: Session, run_id: int | None = None) -> dict:
    """The stored report of run `run_id`, or of the latest run that stored one."""
    # JSON null and SQL NULL both mean "no report" (runs stored before reports were): checked here, not in SQL
    if run_id is not None:
        run = session.get(AuditRun, run_id)
        if run is None or not run.report:
            raise NotFound(f"no audit run {run_id} with a stored report")
    else:
        runs = session.execute(sa.select(AuditRun).order_by(col(AuditRun.id).desc()).limit(100)).scalars()
        run = next((r for r in runs if r.report), None)
        if run is None:
            raise NotFound("no audit run with a stored report yet; run `govern audit` first")
    return dict(run.report or {})


def count_runs(session: Session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(AuditRun)).scalar_one()


def finding_dict(row: Finding, source: str | None = None) -> dict:
    rule = catalogue().get(row.rule_id)
    evidence = dict(row.evidence or {})
    location = evidence.pop("_location", None)
    suppression = evidence.pop("_suppression", None)
    return {"id": row.id, "fingerprint": row.external_id, "rule_id": row.rule_id, "severity": row.severity,
            "subject_kind": row.subject_kind, "subject": row.subject, "message": row.title,
            "title": rule.title if rule else row.rule_id, "rationale": rule.rationale if rule else "", "evidence": evidence,
            "remediation": row.remediation, "status": row.status, "location": location, "suppression": suppression,
            "first_seen_at": row.first_seen_at.isoformat() if row.first_seen_at else None,
            "last_seen_at": row.last_seen_at.isoformat() if row.last_seen_at else None,
            "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None, "source": source}


def query_findings(session: Session, *, severity=None, rule=None, status=None, subject=None, source=None, limit=50,
                   offset=0):
    q = sa.select(Finding, col(Finding.source))
    if source:
        q = q.where(col(Finding.source) == source)
    if severity:
        q = q.where(col(Finding.severity) == severity)
    if rule:
        q = q.where(col(Finding.rule_id) == rule)
    if status:
        q = q.where(col(Finding.status) == status)
    if subject:
        q = q.where(col(Finding.subject).contains(subject))
    total = session.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
    rows = session.execute(q.order_by(col(Finding.id)).limit(limit).offset(offset)).all()
    return total, [finding_dict(f, src) for f, src in rows]


def get_finding(session: Session, finding_id: int) -> dict:
    row = session.execute(sa.select(Finding, col(Finding.source)).where(col(Finding.id) == finding_id)).first()
    if row is None:
        raise NotFound(f"finding {finding_id} does not exist")
    return finding_dict(*row)


def list_runs(session: Session, limit=50, offset=0):
    total = session.execute(sa.select(sa.func.count()).select_from(AuditRun)).scalar_one()
    rows = session.execute(sa.select(AuditRun).order_by(col(AuditRun.id).desc()).limit(limit).offset(offset)).scalars()
    return total, [{"id": r.id, "source": r.source, "sources": r.sources or [r.source], "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None, "counts": r.counts,
                    "new": r.new, "resolved": r.resolved, "reopened": r.reopened} for r in rows]
