"""GET /api/v1/decisions: the decision log, filtered and paged, newest first (auditor role)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from govern.api.auth import require_admin
from govern.api.edge import int_arg
from govern.bounds import SQL_BIGINT_MAX
from govern.domain.decision_chain import OUTCOMES
from govern.errors import ValidationFailed
from govern.api.findings import _page
from govern.store.decisions import query_decisions
from govern.api.spec import admin, json_response, problems, query_param

bp = Blueprint("decisions", __name__, url_prefix="/api/v1")


@bp.get("/decisions")
@require_admin("auditor")
def list_decisions():
    outcome = request.args.get("outcome")
    if outcome and outcome not in OUTCOMES:
        raise ValidationFailed([{"location": "outcome", "message": f"must be one of {', '.join(OUTCOMES)}"}])
    after = int_arg("after", -1, 0, SQL_BIGINT_MAX)
    after = None if after < 0 else after
    limit, offset = _page()
    args = request.args
    with current_app.extensions["govern"].sessions() as session:
        total, items = query_decisions(session, outcome=outcome, integration_user=args.get("integration_user"),
                                       named_credential=args.get("named_credential"), action=args.get("action"),
                                       correlation_id=args.get("correlation_id"),
                                       after=after, limit=limit, offset=offset,
                                       newest_first=after is None)
    return jsonify({"total": total, "limit": limit, "offset": offset, "items": items})


def _openapi() -> dict:
    decision = {"type": "object", "required": ["id", "at", "action", "outcome", "rules"], "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
        "correlation_id": {"type": "string"}, "integration_user": {"type": ["string", "null"]},
        "action": {"type": "string", "description": "token, proxy, proxy_delivery, oauth_token or connect"},
        "named_credential": {"type": ["string", "null"]}, "principal": {"type": ["string", "null"]},
        "method": {"type": ["string", "null"]}, "path": {"type": ["string", "null"]},
        "resource_object": {"type": ["string", "null"]}, "api_type": {"type": ["string", "null"]},
        "scopes_requested": {"type": "array", "items": {"type": "string"}},
        "scopes_granted": {"type": "array", "items": {"type": "string"}},
        "source_ip": {"type": ["string", "null"]}, "allowed": {"type": "boolean"},
        "outcome": {"enum": list(OUTCOMES), "description": "allow: allowed and carried out; deny: refused; "
                                                           "error: allowed, but it failed (error_code says why)"},
        "error_code": {"type": ["string", "null"]}, "rules": {"type": "array", "items": {"type": "string"}},
        "upstream_status": {"type": ["integer", "null"]}, "latency_ms": {"type": ["number", "null"]},
        "key_id": {"type": ["string", "null"]}, "hash": {"type": "string"}}}
    paged = {"type": "object", "required": ["total", "limit", "offset", "items"],
             "properties": {"total": {"type": "integer"}, "limit": {"type": "integer"},
                            "offset": {"type": "integer"}, "items": {"type": "array", "items": decision}}}
    return {"/api/v1/decisions": {"get": {
        "summary": "Decision records, newest first (oldest first after a cursor)", "operationId": "listDecisions",
        **admin("auditor"),
        "parameters": [query_param("outcome", "", {"enum": list(OUTCOMES)}),
                       query_param("integration_user", "integration user or claimed OAuth client id"),
                       query_param("named_credential", "named credential"), query_param("action", "action"),
                       query_param("correlation_id", "one request's records"),
                       query_param("after", "records with an id above this one, oldest first (a cursor)",
                                   {"type": "integer", "minimum": 0, "maximum": SQL_BIGINT_MAX}),
                       query_param("limit", "1 to 500", {"type": "integer", "minimum": 1, "maximum": 500}),
                       query_param("offset", "0 or more", {"type": "integer", "minimum": 0,
                                                          "maximum": SQL_BIGINT_MAX})],
        "responses": {"200": json_response("Decisions", paged), **problems(400, 401, 403, 422)}}}}


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
