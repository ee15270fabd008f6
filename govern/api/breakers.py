"""Circuit-breaker state per system, for operators (admin tokens)."""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict

from govern.api.auth import require_admin
from govern.api.spec import api, responses
from govern.broker.proxy import breaker_states
from govern.errors import NotFound

bp = Blueprint("breakers", __name__)


class BreakerState(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int | None = None
    system: str
    state: Literal["closed", "open", "half_open"]


class BreakerStates(BaseModel):
    items: list[BreakerState]


@bp.get("/api/v1/breakers")
@require_admin("auditor")
@api.validate(resp=responses(200, BreakerStates), operation_id="listBreakers")
def list_breakers():
    """Every system's circuit-breaker state"""
    return jsonify(items=_breaker_states())


@bp.get("/api/v1/systems/<system>/breaker")
@require_admin("auditor")
@api.validate(resp=responses(200, BreakerState, 404), operation_id="getBreaker",
              path_parameter_descriptions={"system": "the system's external id or numeric id"})
def system_breaker(system: str):
    """One system's circuit-breaker state"""
    for state in _breaker_states():
        if state["system"] == system or str(state["id"]) == system:
            return jsonify(state)
    raise NotFound("no system with that id")


def _breaker_states() -> list[dict]:
    services = current_app.extensions["govern"]
    return breaker_states(services.proxy, sessions=services.sessions, cache=services.cache, clock=services.clock)
