"""/healthz (alive) and /readyz (database, secret store and cache reachable)."""
from __future__ import annotations

import logging

from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel

from govern.api.spec import Responses, api, responses

bp = Blueprint("health", __name__)
log = logging.getLogger("govern.health")


class Alive(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded"]
    checks: dict[str, Literal["ok", "unavailable"]]


@bp.get("/healthz")
@api.validate(resp=responses(200, Alive, description="alive"), operation_id="healthz")
def healthz():
    """Alive"""
    return jsonify(status="ok")


@bp.get("/readyz")
@api.validate(resp=Responses(HTTP_200=(Readiness, "ready"), HTTP_503=(Readiness, "degraded")), operation_id="readyz")
def readyz():
    """Database, secret store and cache reachable"""
    services = current_app.extensions["govern"]
    checks: dict[str, str] = {}
    for name, check in services.health_checks.items():
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # each check fails alone; the type is enough to act on
            checks[name] = "unavailable"
            log.warning("readiness check failed", extra={"check": name, "exc_type": type(exc).__name__})
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "degraded", "checks": checks}
    return jsonify(body), 200 if ready else 503, {} if ready else {"Retry-After": "5"}
