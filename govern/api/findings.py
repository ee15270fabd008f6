"""GET /api/v1/findings, /api/v1/findings/{id}, /api/v1/audit/runs: the stored audit results (auditor role)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from govern.api.auth import require_admin
from govern.api.edge import int_arg
from govern.audit.engine import SEVERITIES
from govern.bounds import SQL_BIGINT_MAX, SQL_ID_MAX
from govern.errors import ValidationFailed
from govern.store import audit_runs
from govern.api.spec import admin, json_response, path_param, problems, query_param

bp = Blueprint("findings", __name__, url_prefix="/api/v1")
STATUSES = ("open", "resolved", "suppressed")


def _page() -> tuple[int, int]:
    return int_arg("limit", 50, 1, 500), int_arg("offset", 0, 0, SQL_BIGINT_MAX)


@bp.get("/findings")
@require_admin("auditor")
def list_findings():
    severity, status = request.args.get("severity"), request.args.get("status")
    errors = []
    if severity and severity not in SEVERITIES:
        errors.append({"location": "severity", "message": f"must be one of {', '.join(SEVERITIES)}"})
    if status and status not in STATUSES:
        errors.append({"location": "status", "message": f"must be one of {', '.join(STATUSES)}"})
    if errors:
        raise ValidationFailed(errors)
    limit, offset = _page()
    with current_app.extensions["govern"].sessions() as session:
        total, items = audit_runs.query_findings(session, severity=severity, rule=request.args.get("rule"),
                                                 status=status, subject=request.args.get("subject"),
                                                 source=request.args.get("source"), limit=limit, offset=offset)
    return jsonify({"total": total, "limit": limit, "offset": offset, "items": items})


@bp.get("/findings/<int:finding_id>")
@require_admin("auditor")
def get_finding(finding_id: int):
    with current_app.extensions["govern"].sessions() as session:
        return jsonify(audit_runs.get_finding(session, finding_id))


@bp.get("/audit/runs")
@require_admin("auditor")
def list_runs():
    limit, offset = _page()
    with current_app.extensions["govern"].sessions() as session:
        total, items = audit_runs.list_runs(session, limit, offset)
    return jsonify({"total": total, "limit": limit, "offset": offset, "items": items})


def _openapi() -> dict:
    page = [query_param("limit", "1 to 500", {"type": "integer", "minimum": 1, "maximum": 500}),
            query_param("offset", "0 or more", {"type": "integer", "minimum": 0, "maximum": SQL_BIGINT_MAX})]

    def paged(item: dict) -> dict:
        return {"type": "object", "required": ["total", "limit", "offset", "items"],
                "properties": {"total": {"type": "integer"}, "limit": {"type": "integer"},
                               "offset": {"type": "integer"}, "items": {"type": "array", "items": item}}}

    finding = {"$ref": "#/components/schemas/Finding"}
    return {
        "/api/v1/findings": {"get": {
            "summary": "Audit findings, filtered", "operationId": "listFindings", **admin("auditor"),
            "parameters": [query_param("severity", "", {"enum": list(SEVERITIES)}),
                           query_param("status", "", {"enum": list(STATUSES)}),
                           query_param("rule", "rule id"), query_param("subject", "subject id"),
                           query_param("source", "source name: govern, or an imported org's"), *page],
            "responses": {"200": json_response("Findings", paged(finding)), **problems(400, 401, 403, 422)}}},
        "/api/v1/findings/{finding_id}": {"get": {
            "summary": "One finding", "operationId": "getFinding", **admin("auditor"),
            "parameters": [path_param("finding_id", schema={"type": "integer", "minimum": 0, "maximum": SQL_ID_MAX})],
            "responses": {"200": json_response("Finding", finding), **problems(400, 401, 403, 404)}}},
        "/api/v1/audit/runs": {"get": {
            "summary": "Audit runs, newest first", "operationId": "listAuditRuns", **admin("auditor"),
            "parameters": page,
            "responses": {"200": json_response("Runs", paged({"type": "object"})), **problems(400, 401, 403)}}},
    }


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
