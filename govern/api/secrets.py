"""Secret values, write-only: PUT a value, read back only "set on DATE, version N".

    PUT /api/v1/credentials/{id}/secrets/{field}?principal=P    {"value": "..."}
    PUT /api/v1/integration-users/{id}/secrets/{field}          {"value": "..."}
    GET /api/v1/credentials/{id}/secrets                        metadata only
    GET /api/v1/integration-users/{id}/secrets                  metadata only
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from govern.api.auth import require_admin
from govern.errors import ValidationFailed

bp = Blueprint("secrets", __name__, url_prefix="/api/v1")


def _service():
    from govern.secrets.service import secret_service

    return secret_service(current_app.extensions["govern"])


def _value() -> str:
    # Parsed here, in one place; the value is never echoed in an error.
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("value"), str):
        raise ValidationFailed([{"location": "body.value", "message": 'send a JSON object {"value": "<secret>"}'}])
    return body["value"]


@bp.put("/credentials/<credential>/secrets/<field>")
@require_admin("admin")
def put_credential_secret(credential: str, field: str):
    status = _service().put_for_credential(credential, field, _value(), principal=request.args.get("principal") or None,
                                           actor=g.admin_user, correlation_id=g.get("correlation_id"))
    return jsonify(status.as_dict())


@bp.put("/integration-users/<user>/secrets/<field>")
@require_admin("admin")
def put_user_secret(user: str, field: str):
    status = _service().put_for_user(user, field, _value(), actor=g.admin_user, correlation_id=g.get("correlation_id"))
    return jsonify(status.as_dict())


@bp.get("/credentials/<credential>/secrets")
@require_admin("auditor")
def list_credential_secrets(credential: str):
    service = _service()
    service.check_credential(credential)
    return jsonify(items=[s.as_dict() for s in service.status(owner_kind="credential", owner=credential)])


@bp.get("/integration-users/<user>/secrets")
@require_admin("auditor")
def list_user_secrets(user: str):
    service = _service()
    service.check_user(user)
    return jsonify(items=[s.as_dict() for s in service.status(owner_kind="integration_user", owner=user)])
