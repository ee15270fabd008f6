"""GET /api/v1/decisions: the decision log, filtered and paged, newest first (auditor role)."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field

from govern.api.auth import require_admin
from govern.api.spec import Paged, api, one_of, query_int, responses, validated_query
from govern.bounds import SQL_ID_MAX
from govern.domain.decision_chain import OUTCOMES
from govern.store.decisions import query_decisions

bp = Blueprint("decisions", __name__, url_prefix="/api/v1")


class Decision(BaseModel):
    """One decision record (the hash chains it to the one before)."""

    model_config = ConfigDict(extra="allow")
    id: int
    at: dt.datetime
    correlation_id: str | None = None
    integration_user: str | None = None
    action: str = Field(description="token, proxy, proxy_delivery, oauth_token or connect")
    named_credential: str | None = None
    principal: str | None = None
    method: str | None = None
    path: str | None = None
    resource_object: str | None = None
    api_type: str | None = None
    scopes_requested: list[str] = []
    scopes_granted: list[str] = []
    source_ip: str | None = None
    allowed: bool | None = None
    outcome: Literal[OUTCOMES] = Field(  # type: ignore[valid-type]
        description="allow: allowed and carried out; deny: refused; error: allowed, but it failed (error_code says why)")
    error_code: str | None = None
    rules: list[str]
    upstream_status: int | None = None
    latency_ms: float | None = None
    key_id: str | None = None
    hash: str | None = None


class Decisions(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[Decision]


class DecisionQuery(Paged):
    outcome: one_of(OUTCOMES) = None  # type: ignore[valid-type]
    integration_user: str | None = Field(None, description="integration user or claimed OAuth client id")
    named_credential: str | None = None
    action: str | None = None
    correlation_id: str | None = Field(None, description="one request's records")
    # a record id is an INTEGER column: a larger cursor names no record (PostgreSQL would refuse the comparison)
    after: query_int(0, SQL_ID_MAX) | None = Field(  # type: ignore[valid-type]
        None, description="records with an id above this one, oldest first (a cursor)")


@bp.get("/decisions")
@require_admin("auditor")
@api.validate(query=DecisionQuery, resp=responses(200, Decisions, 422), operation_id="listDecisions")
def list_decisions():
    """Decision records, newest first (oldest first after a cursor)"""
    query = validated_query()
    with current_app.extensions["govern"].sessions() as session:
        total, items = query_decisions(session, outcome=query.outcome, integration_user=query.integration_user,
                                       named_credential=query.named_credential, action=query.action,
                                       correlation_id=query.correlation_id, after=query.after, limit=query.limit,
                                       offset=query.offset, newest_first=query.after is None)
    return jsonify({"total": total, "limit": query.limit, "offset": query.offset, "items": items})
