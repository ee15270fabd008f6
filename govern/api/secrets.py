"""Secret values, write-only: PUT a value, read back only "set on DATE, version N".

    PUT /api/v1/credentials/{id}/secrets/{field}?principal=P    {"value": "..."}
    PUT /api/v1/integration-users/{id}/secrets/{field}          {"value": "..."}
    DELETE the same two: every stored version, the reference and its rotation history
    GET /api/v1/credentials/{id}/secrets                        metadata only
    GET /api/v1/integration-users/{id}/secrets                  metadata only
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from govern.api.auth import require_admin
from govern.errors import ValidationFailed
from govern.secrets.service import secret_service, secret_ref_name
from govern.api.spec import admin, items_of, json_body, json_response, path_param, problems, query_param

bp = Blueprint("secrets", __name__, url_prefix="/api/v1")


def _service():
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


@bp.delete("/credentials/<credential>/secrets/<field>")
@require_admin("admin")
def delete_credential_secret(credential: str, field: str):
    ref = secret_ref_name("credential", credential, request.args.get("principal") or None, field)
    return jsonify(_service().delete(ref, actor=g.admin_user, correlation_id=g.get("correlation_id")))


@bp.delete("/integration-users/<user>/secrets/<field>")
@require_admin("admin")
def delete_user_secret(user: str, field: str):
    ref = secret_ref_name("integration_user", user, None, field)
    return jsonify(_service().delete(ref, actor=g.admin_user, correlation_id=g.get("correlation_id")))


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


def _openapi() -> dict:
    status = {"$ref": "#/components/schemas/SecretStatus"}
    value = json_body({"type": "object", "required": ["value"], "additionalProperties": False,
                       "properties": {"value": {"type": "string", "writeOnly": True}}})
    field = path_param("field", "the secret's field, e.g. client_secret or refresh_token")
    paths = {}
    for owner, param, kind in (("credentials", "credential", "an external credential"),
                               ("integration-users", "user", "an integration user")):
        put = {"summary": f"Set a secret of {kind} (write-only: the value is never returned)",
               "operationId": f"put{param.title()}Secret", **admin("admin"),
               "parameters": [path_param(param), field], "requestBody": value,
               "responses": {"200": json_response("The new version's metadata", status),
                             **problems(400, 401, 403, 404, 422, 503)}}
        delete = {"summary": f"Delete a secret of {kind}: every stored version, its reference and rotation history",
                  "operationId": f"delete{param.title()}Secret", **admin("admin"),
                  "parameters": [path_param(param), field],
                  "responses": {"200": json_response("What was deleted (never a value)", {"type": "object"}),
                                **problems(401, 403, 404, 409, 503)}}
        if param == "credential":
            put["parameters"].append(query_param("principal", "the principal the secret belongs to, if any"))
            delete["parameters"].append(query_param("principal", "the principal the secret belongs to, if any"))
        paths[f"/api/v1/{owner}/{{{param}}}/secrets/{{field}}"] = {"put": put, "delete": delete}
        paths[f"/api/v1/{owner}/{{{param}}}/secrets"] = {"get": {
            "summary": f"The secrets of {kind}: metadata only (set on, version), never values",
            "operationId": f"list{param.title()}Secrets", **admin("auditor"),
            "parameters": [path_param(param)],
            "responses": {"200": json_response("Secret metadata", items_of(status)), **problems(401, 403, 404)}}}
    return paths


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
