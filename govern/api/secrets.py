"""Secret values, write-only: PUT a value, read back only "set on DATE, version N".

    PUT /api/v1/credentials/{id}/secrets/{field}?principal=P    {"value": "..."}
    PUT /api/v1/integration-users/{id}/secrets/{field}          {"value": "..."}
    DELETE the same two: every stored version, the reference and its rotation history
    GET /api/v1/credentials/{id}/secrets                        metadata only
    GET /api/v1/integration-users/{id}/secrets                  metadata only
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Blueprint, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from govern.api.auth import require_admin
from govern.api.spec import api, responses, validated_json, validated_query
from govern.domain.secret import secret_ref_name
from govern.secrets.service import secret_service

bp = Blueprint("secrets", __name__, url_prefix="/api/v1")
_FIELD = {"field": "the secret's field, e.g. client_secret or refresh_token"}


class SecretValue(BaseModel):
    """The value to store; it is never returned, logged or echoed in an error."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(json_schema_extra={"writeOnly": True})


class PrincipalQuery(BaseModel):
    principal: str | None = Field(None, description="the principal the secret belongs to, if any")


class SecretStatus(BaseModel):
    """A secret's metadata: where it is and which version, never its value."""

    ref: str | None = None
    owner_kind: Literal["credential", "integration_user"]
    owner: str
    principal: str | None = None
    field: str
    store: str | None = None
    version: int | None = None
    set_at: dt.datetime | None = None
    status: str = Field(description='e.g. "set on 2026-01-02, version 3"')


class SecretStatuses(BaseModel):
    items: list[SecretStatus]


class Deleted(BaseModel):
    """What was deleted (never a value)."""

    model_config = ConfigDict(extra="allow")


def _service():
    return secret_service(current_app.extensions["govern"])


def _value() -> str:
    return validated_json().value


def _principal() -> str | None:
    return validated_query().principal or None


@bp.put("/credentials/<credential>/secrets/<field>")
@require_admin("admin")
@api.validate(query=PrincipalQuery, json=SecretValue, resp=responses(200, SecretStatus, 404, 422, 503),
              operation_id="putCredentialSecret", path_parameter_descriptions=_FIELD)
def put_credential_secret(credential: str, field: str):
    """Set a secret of an external credential (write-only: the value is never returned)"""
    status = _service().put_for_credential(credential, field, _value(), principal=_principal(),
                                           actor=g.admin_user, correlation_id=g.get("correlation_id"))
    return jsonify(status.as_dict())


@bp.put("/integration-users/<user>/secrets/<field>")
@require_admin("admin")
@api.validate(json=SecretValue, resp=responses(200, SecretStatus, 404, 422, 503), operation_id="putUserSecret",
              path_parameter_descriptions=_FIELD)
def put_user_secret(user: str, field: str):
    """Set a secret of an integration user (write-only: the value is never returned)"""
    status = _service().put_for_user(user, field, _value(), actor=g.admin_user, correlation_id=g.get("correlation_id"))
    return jsonify(status.as_dict())


@bp.delete("/credentials/<credential>/secrets/<field>")
@require_admin("admin")
@api.validate(query=PrincipalQuery, resp=responses(200, Deleted, 404, 409, 503), operation_id="deleteCredentialSecret",
              path_parameter_descriptions=_FIELD)
def delete_credential_secret(credential: str, field: str):
    """Delete a secret of an external credential: every stored version, its reference and rotation history"""
    ref = secret_ref_name("credential", credential, _principal(), field)
    return jsonify(_service().delete(ref, actor=g.admin_user, correlation_id=g.get("correlation_id")))


@bp.delete("/integration-users/<user>/secrets/<field>")
@require_admin("admin")
@api.validate(resp=responses(200, Deleted, 404, 409, 503), operation_id="deleteUserSecret",
              path_parameter_descriptions=_FIELD)
def delete_user_secret(user: str, field: str):
    """Delete a secret of an integration user: every stored version, its reference and rotation history"""
    ref = secret_ref_name("integration_user", user, None, field)
    return jsonify(_service().delete(ref, actor=g.admin_user, correlation_id=g.get("correlation_id")))


@bp.get("/credentials/<credential>/secrets")
@require_admin("auditor")
@api.validate(resp=responses(200, SecretStatuses, 404), operation_id="listCredentialSecrets")
def list_credential_secrets(credential: str):
    """The secrets of an external credential: metadata only (set on, version), never values"""
    service = _service()
    service.check_credential(credential)
    return jsonify(items=[s.as_dict() for s in service.status(owner_kind="credential", owner=credential)])


@bp.get("/integration-users/<user>/secrets")
@require_admin("auditor")
@api.validate(resp=responses(200, SecretStatuses, 404), operation_id="listUserSecrets")
def list_user_secrets(user: str):
    """The secrets of an integration user: metadata only (set on, version), never values"""
    service = _service()
    service.check_user(user)
    return jsonify(items=[s.as_dict() for s in service.status(owner_kind="integration_user", owner=user)])
