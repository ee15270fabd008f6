"""Small builders for the OpenAPI 3.1 fragments each blueprint exports as `OPENAPI_PATHS`.

govern/api/openapi.py merges the fragments into one document, so a route and its description live in the
same module. Problem responses follow RFC 9457 (`application/problem+json`, schema `Problem`).
"""
from __future__ import annotations

from typing import Any

PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
_REASONS = {400: "Bad request", 401: "Not authenticated", 403: "Not allowed", 404: "Not found", 409: "Conflict",
            413: "Payload too large", 415: "Unsupported media type", 422: "Validation failed",
            429: "Rate limited", 500: "Internal error", 502: "Upstream failed", 503: "Unavailable",
            504: "Upstream timed out"}


def problems(*statuses: int) -> dict[str, Any]:
    """Error responses rendered by govern/api/problems.py."""
    return {str(s): {"description": f"{_REASONS.get(s, 'Error')} (RFC 9457 problem details)",
                     "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}} for s in statuses}


def path_param(name: str, description: str = "", schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def query_param(name: str, description: str, schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def json_body(schema: dict, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def json_response(description: str, schema: dict) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def admin(role: str) -> dict[str, Any]:
    """The security and the description line of an endpoint protected by govern/api/auth.py require_admin."""
    return {"security": [{"adminToken": []}], "x-govern-role": role}


def items_of(schema: dict, **extra: dict) -> dict[str, Any]:
    return {"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": schema}, **extra}}
