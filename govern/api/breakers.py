"""Circuit-breaker state per system, for operators (admin tokens)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from govern.api.auth import require_admin
from govern.broker.proxy import breaker_states
from govern.errors import NotFound
from govern.api.spec import admin, items_of, json_response, path_param, problems

bp = Blueprint("breakers", __name__)


@bp.get("/api/v1/breakers")
@require_admin("auditor")
def list_breakers():
    return jsonify(items=breaker_states(current_app.extensions["govern"]))


@bp.get("/api/v1/systems/<system>/breaker")
@require_admin("auditor")
def system_breaker(system: str):
    for state in breaker_states(current_app.extensions["govern"]):
        if state["system"] == system or str(state["id"]) == system:
            return jsonify(state)
    raise NotFound("no system with that id")


def _openapi() -> dict:
    state = {"$ref": "#/components/schemas/BreakerState"}
    return {
        "/api/v1/breakers": {"get": {"summary": "Every system's circuit-breaker state", "operationId": "listBreakers",
                                     **admin("auditor"),
                                     "responses": {"200": json_response("Breakers", items_of(state)),
                                                   **problems(401, 403)}}},
        "/api/v1/systems/{system}/breaker": {"get": {
            "summary": "One system's circuit-breaker state", "operationId": "getBreaker", **admin("auditor"),
            "parameters": [path_param("system", "the system's external id or numeric id")],
            "responses": {"200": json_response("Breaker", state), **problems(401, 403, 404)}}},
    }


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
