"""/api/v1/rotations: rotation history, start now, retry, confirm a manual set, acknowledge. Views parse, call the
service, map errors.

Starting and retrying only queue the work (202): a worker (`govern worker`) runs the steps, so an HTTP
request never holds a lease on a target system.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, url_for

from govern.api.auth import require_admin
from govern.api.edge import int_arg
from govern.bounds import SQL_ID_MAX
from govern.errors import Conflict, ValidationFailed
from govern.rotation import machine
from govern.rotation.history import get_run, list_runs
from govern.rotation.runner import RotationService
from govern.api.spec import admin, items_of, json_body, json_response, path_param, problems, query_param

bp = Blueprint("rotations", __name__, url_prefix="/api/v1/rotations")


def _services():
    return current_app.extensions["govern"]


def _service():
    return RotationService(_services(), worker_id=f"api:{getattr(g, 'admin_user', '?')}")


def _json(run: dict) -> dict:
    out = dict(run)
    for key in ("next_attempt_at", "claimed_until", "started_at", "finished_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


@bp.get("")
@require_admin("auditor")
def list_rotations():
    state = request.args.get("state")
    if state and state not in machine.ACTIVE | machine.TERMINAL:
        raise ValidationFailed([{"location": "query.state", "message": "unknown state"}])
    runs = list_runs(_services().sessions, secret=request.args.get("secret"), state=state,
                     rotator=request.args.get("rotator"), limit=int_arg("limit", 50, 1, 500),
                     offset=int_arg("offset", 0, 0, 10**9))
    return jsonify(items=[_json(r) for r in runs])


@bp.get("/<int:run_id>")
@require_admin("auditor")
def show_rotation(run_id: int):
    return jsonify(_json(get_run(_services().sessions, run_id)))


@bp.post("")
@require_admin("operator")
def start_rotation():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("secret"), str) or not body["secret"]:
        raise ValidationFailed([{"location": "body.secret", "message": "the name of a secret is required"}])
    svc = _service()
    ref = svc.find_ref(body["secret"])
    run_id, why = svc.start(ref.id, force=True)
    if run_id is None:
        raise Conflict(why)
    resp = jsonify(_json(get_run(_services().sessions, run_id)))
    resp.status_code = 202
    resp.headers["Location"] = url_for("rotations.show_rotation", run_id=run_id)
    return resp


@bp.post("/<int:run_id>/retry")
@require_admin("operator")
def retry_rotation(run_id: int):
    svc = _service()
    svc.requeue(run_id, by=g.admin_user)
    return jsonify(_json(get_run(_services().sessions, run_id))), 202


@bp.post("/<int:run_id>/confirm")
@require_admin("operator")
def confirm_rotation(run_id: int):
    _service().confirm(run_id, by=g.admin_user, run_now=False)
    return jsonify(_json(get_run(_services().sessions, run_id))), 202


@bp.post("/<int:run_id>/acknowledge")
@require_admin("operator")
def acknowledge_rotation(run_id: int):
    _service().acknowledge(run_id, by=g.admin_user)
    return jsonify(_json(get_run(_services().sessions, run_id)))


def _openapi() -> dict:
    run = {"$ref": "#/components/schemas/RotationRun"}
    run_id = [path_param("run_id", schema={"type": "integer", "minimum": 0, "maximum": SQL_ID_MAX})]
    paths = {
        "/api/v1/rotations": {
            "get": {"summary": "Rotation runs, newest first", "operationId": "listRotations", **admin("auditor"),
                    "parameters": [query_param("secret", "the secret's external id"),
                                   query_param("state", "run state"), query_param("rotator", "rotator name"),
                                   query_param("limit", "1 to 500", {"type": "integer", "minimum": 1, "maximum": 500}),
                                   query_param("offset", "0 or more",
                                               {"type": "integer", "minimum": 0, "maximum": 10**9})],
                    "responses": {"200": json_response("Runs", items_of(run)), **problems(400, 401, 403, 422)}},
            "post": {"summary": "Start rotating a secret now (queued for the worker)", "operationId": "startRotation",
                     **admin("operator"),
                     "requestBody": json_body({"type": "object", "required": ["secret"],
                                               "properties": {"secret": {"type": "string"}}}),
                     "responses": {"202": json_response("Queued; Location names the run", run),
                                   **problems(401, 403, 404, 409, 422)}}},
        "/api/v1/rotations/{run_id}": {"get": {
            "summary": "One rotation run with its steps", "operationId": "getRotation", **admin("auditor"),
            "parameters": run_id, "responses": {"200": json_response("Run", run), **problems(400, 401, 403, 404)}}},
    }
    for action, summary, status in (("retry", "Queue a failed or parked run again", "202"),
                                     ("confirm", "Confirm a manually set secret of a run", "202"),
                                     ("acknowledge", "Acknowledge a parked or failed run", "200")):
        paths[f"/api/v1/rotations/{{run_id}}/{action}"] = {"post": {
            "summary": summary, "operationId": f"{action}Rotation", **admin("operator"), "parameters": run_id,
            "responses": {status: json_response("Run", run), **problems(400, 401, 403, 404, 409)}}}
    return paths


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
