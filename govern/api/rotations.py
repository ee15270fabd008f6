"""/api/v1/rotations: rotation history, start now, retry, confirm a manual set, acknowledge. Views parse, call the
service, map errors.

Starting and retrying only queue the work (202): a worker (`govern worker`) runs the steps, so an HTTP
request never holds a lease on a target system.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, g, jsonify, url_for
from pydantic import BaseModel, ConfigDict, Field

from govern.api.auth import require_admin
from govern.api.spec import api, one_of, query_int, responses, validated_json, validated_query
from govern.errors import Conflict
from govern.rotation import machine
from govern.store.rotation_history import get_run, list_runs
from govern.rotation.wiring import rotation_service

bp = Blueprint("rotations", __name__, url_prefix="/api/v1/rotations")


class RotationRun(BaseModel):
    """One rotation run with its steps."""

    model_config = ConfigDict(extra="allow")
    id: int
    secret: str
    rotator: str | None = None
    state: str
    system: str | None = None
    attempts: int = 0
    pending_version: int | None = None
    steps: list[Any] = []
    error: str | None = None
    next_attempt_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class RotationRuns(BaseModel):
    items: list[RotationRun]


class RotationQuery(BaseModel):
    secret: str | None = Field(None, description="the secret's external id")
    state: one_of(sorted(machine.ACTIVE | machine.TERMINAL)) = Field(None, description="run state")  # type: ignore[valid-type]
    rotator: str | None = Field(None, description="rotator name")
    limit: query_int(1, 500) = 50  # type: ignore[valid-type]
    offset: query_int(0, 10**9) = 0  # type: ignore[valid-type]


class StartRotation(BaseModel):
    secret: str = Field(min_length=1, description="the name of a secret")


def _services():
    return current_app.extensions["govern"]


def _service():
    return rotation_service(_services(), worker_id=f"api:{getattr(g, 'admin_user', '?')}")


def _json(run: dict) -> dict:
    out = dict(run)
    for key in ("next_attempt_at", "claimed_until", "started_at", "finished_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


@bp.get("")
@require_admin("auditor")
@api.validate(query=RotationQuery, resp=responses(200, RotationRuns, 422), operation_id="listRotations")
def list_rotations():
    """Rotation runs, newest first"""
    query = validated_query()
    runs = list_runs(_services().sessions, secret=query.secret, state=query.state, rotator=query.rotator,
                     limit=query.limit, offset=query.offset)
    return jsonify(items=[_json(r) for r in runs])


@bp.get("/<int:run_id>")
@require_admin("auditor")
@api.validate(resp=responses(200, RotationRun, 404), operation_id="getRotation")
def show_rotation(run_id: int):
    """One rotation run with its steps"""
    return jsonify(_json(get_run(_services().sessions, run_id)))


@bp.post("")
@require_admin("operator")
@api.validate(json=StartRotation, resp=responses(202, RotationRun, 404, 409, 422,
                                                 description="Queued; Location names the run"),
              operation_id="startRotation")
def start_rotation():
    """Start rotating a secret now (queued for the worker)"""
    svc = _service()
    ref = svc.find_ref(validated_json().secret)
    run_id, why = svc.start(ref.id, force=True)
    if run_id is None:
        raise Conflict(why)
    resp = jsonify(_json(get_run(_services().sessions, run_id)))
    resp.status_code = 202
    resp.headers["Location"] = url_for("rotations.show_rotation", run_id=run_id)
    return resp


@bp.post("/<int:run_id>/retry")
@require_admin("operator")
@api.validate(resp=responses(202, RotationRun, 404, 409), operation_id="retryRotation")
def retry_rotation(run_id: int):
    """Queue a failed or parked run again"""
    svc = _service()
    svc.requeue(run_id, by=g.admin_user)
    return jsonify(_json(get_run(_services().sessions, run_id))), 202


@bp.post("/<int:run_id>/confirm")
@require_admin("operator")
@api.validate(resp=responses(202, RotationRun, 404, 409), operation_id="confirmRotation")
def confirm_rotation(run_id: int):
    """Confirm a manually set secret of a run"""
    _service().confirm(run_id, by=g.admin_user, run_now=False)
    return jsonify(_json(get_run(_services().sessions, run_id))), 202


@bp.post("/<int:run_id>/acknowledge")
@require_admin("operator")
@api.validate(resp=responses(200, RotationRun, 404, 409), operation_id="acknowledgeRotation")
def acknowledge_rotation(run_id: int):
    """Acknowledge a parked or failed run"""
    _service().acknowledge(run_id, by=g.admin_user)
    return jsonify(_json(get_run(_services().sessions, run_id)))
