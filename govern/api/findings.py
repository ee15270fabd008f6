"""GET /api/v1/findings, /api/v1/findings/{id}, /api/v1/audit/runs: the stored audit results (auditor role)."""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field

from govern.api.auth import require_admin
from govern.api.spec import Paged, api, one_of, responses, validated_query
from govern.audit.engine import SEVERITIES
from govern.store import audit_runs

bp = Blueprint("findings", __name__, url_prefix="/api/v1")
STATUSES = ("open", "resolved", "suppressed")


class Finding(BaseModel):
    """An audit finding: a rule broken by a subject, with evidence and remediation."""

    model_config = ConfigDict(extra="allow")
    id: int
    rule_id: str
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    status: str | None = None
    subject_kind: str | None = None
    subject: str | None = None
    title: str | None = None


class Findings(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[Finding]


class AuditRun(BaseModel):
    model_config = ConfigDict(extra="allow")


class AuditRuns(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AuditRun]


class FindingQuery(Paged):
    severity: one_of(SEVERITIES) = None  # type: ignore[valid-type]
    status: one_of(STATUSES) = None  # type: ignore[valid-type]
    rule: str | None = Field(None, description="rule id")
    subject: str | None = Field(None, description="subject id")
    source: str | None = Field(None, description="source name: govern, or an imported org's")


@bp.get("/findings")
@require_admin("auditor")
@api.validate(query=FindingQuery, resp=responses(200, Findings, 422), operation_id="listFindings")
def list_findings():
    """Audit findings, filtered"""
    query = validated_query()
    with current_app.extensions["govern"].sessions() as session:
        total, items = audit_runs.query_findings(session, severity=query.severity, rule=query.rule,
                                                 status=query.status, subject=query.subject, source=query.source,
                                                 limit=query.limit, offset=query.offset)
    return jsonify({"total": total, "limit": query.limit, "offset": query.offset, "items": items})


@bp.get("/findings/<int:finding_id>")
@require_admin("auditor")
@api.validate(resp=responses(200, Finding, 404), operation_id="getFinding")
def get_finding(finding_id: int):
    """One finding"""
    with current_app.extensions["govern"].sessions() as session:
        return jsonify(audit_runs.get_finding(session, finding_id))


@bp.get("/audit/runs")
@require_admin("auditor")
@api.validate(query=Paged, resp=responses(200, AuditRuns), operation_id="listAuditRuns")
def list_runs():
    """Audit runs, newest first"""
    query = validated_query()
    with current_app.extensions["govern"].sessions() as session:
        total, items = audit_runs.list_runs(session, query.limit, query.offset)
    return jsonify({"total": total, "limit": query.limit, "offset": query.offset, "items": items})
