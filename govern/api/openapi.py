"""The OpenAPI 3.1 document of govern's HTTP API, served at `GET /api/v1/openapi.json`.

Generated, not written: spectree builds the paths from `app.url_map` and the models each view names with
`api.validate` (govern/api/spec.py); `finish` adds what the code around the views decides:

- the security of each operation, read from the view itself: `require_admin(role)` marks it (adminToken, the
  least role as `x-govern-role`, and the 401 and 403 it answers);
- the 400 that govern/api/edge.py answers on every route before any view runs (a NUL character, JSON nested
  too deep, a Content-Length that is not a number);
- problem responses as `application/problem+json` (RFC 9457), forms as `application/x-www-form-urlencoded`;
- `openapi_extra` a view sets for what a pydantic model cannot say (a YAML body);
- the callout proxy, which ProxyEdge serves in front of Flask (govern/api/proxy.py describes it).
tests/api/test_openapi_coverage.py checks that every route is here and every documented status is produced.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

from govern.api.auth import ROLE_RANK
from govern.api.spec import FORM, PROBLEM_JSON, _REASONS, api, responses
from govern.bounds import SQL_ID_MAX

# Not "openapi": spectree leaves endpoints of that name out of the document it builds.
bp = Blueprint("api_document", __name__)

SECURITY_SCHEMES = {
    "clientSecretBasic": {"type": "http", "scheme": "basic"},
    "governAccessToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "an admin token (gvn_...); "
                   "the operation's x-govern-role names the least role (auditor, operator, admin)"},
}
_PROBLEM_REF = "#/components/schemas/Problem"
_EDGE_400 = "Malformed request: a NUL character, JSON nested too deep, a bad Content-Length (RFC 9457 problem details)"


@bp.get("/api/v1/openapi.json")
@api.validate(resp=responses(200, None, description="OpenAPI 3.1"), operation_id="getOpenApi")
def openapi_document():
    """This document"""
    return jsonify(document(current_app))


def document(app: Flask) -> dict:
    """The finished document of `app`, built once per app (its routes do not change after create_app)."""
    done = app.extensions.get("govern.openapi")
    if done is None:
        with app.app_context():
            done = app.extensions["govern.openapi"] = finish(copy.deepcopy(api.spec), app)
    return done


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: `/findings/<int:finding_id>` is `/findings/{finding_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _problem(status: int, description: str | None = None) -> dict:
    return {"description": description or f"{_REASONS.get(status, 'Error')} (RFC 9457 problem details)",
            "content": {PROBLEM_JSON: {"schema": {"$ref": _PROBLEM_REF}}}}


def _view_attribute(view: Any, name: str) -> Any:
    """An attribute set on the view or on any function it wraps (decorators keep `__wrapped__`)."""
    while view is not None:
        if name in getattr(view, "__dict__", {}):
            return view.__dict__[name]
        view = getattr(view, "__wrapped__", None)
    return None


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _not_null(param: dict) -> None:
    """A query parameter is text on the wire: a model's `None` means it is absent, never a JSON null."""
    schema = param["schema"]
    if schema.get("default", 0) is None:
        del schema["default"]
    options = [option for option in schema.get("anyOf", ()) if option != {"type": "null"}]
    if len(options) == 1:
        del schema["anyOf"]
        schema.update(options[0])
    schema.pop("title", None)
    if not param.get("description"):
        param.pop("description", None)


def finish(spec: dict, app: Flask) -> dict:
    from govern.api.proxy import pass_through_operations

    spec["openapi"] = "3.1.0"
    spec.pop("tags", None)
    if not spec.get("security"):
        spec.pop("security", None)
    spec["components"]["securitySchemes"] = SECURITY_SCHEMES
    for rule in app.url_map.iter_rules():
        operations = spec["paths"].get(openapi_path(rule.rule))
        if operations is None:
            continue
        view = app.view_functions[rule.endpoint]
        role, extra = _view_attribute(view, "admin_role"), _view_attribute(view, "openapi_extra")
        for method in rule.methods or ():
            op = operations.get(method.lower())
            if op is None:
                continue
            if role is not None:
                op["security"] = [{"adminToken": []}]
                op["x-govern-role"] = role
                op["responses"].setdefault("401", _problem(401))
                if ROLE_RANK[role] > min(ROLE_RANK.values()):  # a valid token below the role
                    op["responses"].setdefault("403", _problem(403))
            if extra:
                _merge(op, copy.deepcopy(extra))
    for operations in spec["paths"].values():
        for op in operations.values():
            op.pop("tags", None)
            if not op.get("description"):
                op.pop("description", None)
            for param in op.get("parameters", []):
                if param["in"] == "query":
                    _not_null(param)
                if param["in"] == "path" and param["schema"].get("type") == "integer":
                    # govern.api.edge.BoundedIntConverter: a row id, ASCII digits
                    param["schema"].update(minimum=0, maximum=SQL_ID_MAX)
            body = op.get("requestBody", {}).get("content", {})
            if "multipart/form-data" in body:
                body[FORM] = body.pop("multipart/form-data")
            for response in op["responses"].values():
                content = response.get("content", {})
                if content.get("application/json", {}).get("schema", {}).get("$ref") == _PROBLEM_REF:
                    content[PROBLEM_JSON] = content.pop("application/json")
            op["responses"].setdefault("400", _problem(400, _EDGE_400))
    spec["paths"].update(pass_through_operations(_PROBLEM_REF))
    return spec
