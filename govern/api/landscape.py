"""Management API for the landscape: read systems, credentials, named credentials, integration users and
permission sets; apply a governance.yaml document.

Views are a permission check and one service call. Lists are paged with `?limit=&cursor=` (the cursor
is opaque; pass back `next_cursor`). Secret values are never returned, only their metadata.
"""
from __future__ import annotations

import base64
import binascii

from flask import Blueprint, current_app, g, jsonify, request

from govern.api.auth import require_admin
from govern.api.edge import int_arg
from govern.errors import BadRequest, GovernError, NotFound
from govern.store.landscape_query import MAX_LIMIT, page
from govern.store.db import session_scope
from govern.landscape import apply_document
from govern.api.spec import admin, json_response, path_param, problems, query_param

bp = Blueprint("landscape", __name__, url_prefix="/api/v1")

RESOURCES = {"systems": "system", "credentials": "credential", "named-credentials": "named_credential",
             "integration-users": "integration_user", "permission-sets": "permission_set"}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class UnsupportedMediaType(GovernError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


def _sessions():
    return current_app.extensions["govern"].sessions


def _encode(cursor: str | None) -> str | None:
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=") if cursor else None


def _decode(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("cursor is not valid; pass back next_cursor unchanged") from None


def _limit() -> int:
    return int_arg("limit", 100, 1, MAX_LIMIT)


def _list(kind: str):
    limit, after = _limit(), _decode(request.args.get("cursor"))
    with session_scope(_sessions()) as session:
        items, next_after = page(session, kind, limit=limit, after=after)
    return jsonify(items=items, next_cursor=_encode(next_after))


def _get(kind: str, ext_id: str):
    with session_scope(_sessions()) as session:
        items, _ = page(session, kind, limit=1, only=ext_id)
    if not items:
        raise NotFound(f"no {kind.replace('_', ' ')} {ext_id!r}")
    return jsonify(items[0])


def _register_reads() -> None:
    for resource, kind in RESOURCES.items():
        bp.add_url_rule(f"/{resource}", f"list_{kind}", require_admin("auditor")(lambda kind=kind: _list(kind)),
                        methods=["GET"])
        bp.add_url_rule(f"/{resource}/<ext_id>", f"get_{kind}",
                        require_admin("auditor")(lambda ext_id, kind=kind: _get(kind, ext_id)), methods=["GET"])


_register_reads()


def _flag(name: str) -> bool:
    value = request.args.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false")
    return value in ("true", "1")


@bp.post("/apply")
@require_admin("admin")
def apply():
    """POST /api/v1/apply: body is governance.yaml (application/yaml). Returns the plan; 422 lists every error."""
    if request.mimetype not in YAML_TYPES:
        raise UnsupportedMediaType("send the governance.yaml document as application/yaml")
    dry_run, prune = _flag("dry_run"), _flag("prune")
    text = request.get_data(as_text=True)
    plan = apply_document(_sessions(), text, "request", dry_run=dry_run, prune=prune, actor=g.admin_user,
                          correlation_id=getattr(g, "correlation_id", None),
                          production=current_app.extensions["govern"].settings.production)
    return jsonify(plan.to_dict())


def _openapi() -> dict:
    paths: dict = {}
    for resource, kind in RESOURCES.items():
        item = {"type": "object", "description": f"A {kind.replace('_', ' ')} (secret values are never included)"}
        name = "".join(part.title() for part in kind.split("_"))
        paths[f"/api/v1/{resource}"] = {"get": {
            "summary": f"List {resource.replace('-', ' ')} (paged)", "operationId": f"list{name}s", **admin("auditor"),
            "parameters": [query_param("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 500}),
                           query_param("cursor", "next_cursor of the previous page")],
            "responses": {"200": json_response("A page", {
                "type": "object", "required": ["items", "next_cursor"],
                "properties": {"items": {"type": "array", "items": item},
                               "next_cursor": {"type": ["string", "null"]}}}), **problems(400, 401, 403)}}}
        paths[f"/api/v1/{resource}/{{ext_id}}"] = {"get": {
            "summary": f"One {kind.replace('_', ' ')} by external id", "operationId": f"get{name}",
            **admin("auditor"), "parameters": [path_param("ext_id", "external id")],
            "responses": {"200": json_response("Found", item), **problems(401, 403, 404)}}}
    paths["/api/v1/apply"] = {"post": {
        "summary": "Apply a governance.yaml document (config as code); answers the plan",
        "operationId": "applyLandscape", **admin("admin"),
        "parameters": [query_param("dry_run", "plan only", {"type": "boolean"}),
                       query_param("prune", "delete what the document no longer lists", {"type": "boolean"})],
        "requestBody": {"required": True, "content": {t: {"schema": {"type": "string"}} for t in YAML_TYPES}},
        "responses": {"200": json_response("The plan (applied unless dry_run)", {"$ref": "#/components/schemas/Plan"}),
                      **problems(400, 401, 403, 409, 413, 415, 422)}}}
    return paths


# Merged by govern/api/openapi.py.
OPENAPI_PATHS: dict = _openapi()
