"""The OpenAPI 3.1 document of govern's HTTP API, served at `GET /api/v1/openapi.json`.

Maintained by hand, next to the routes: the OAuth and broker paths are here; every other blueprint module
exports `OPENAPI_PATHS` (built with govern/api/spec.py) and `document()` merges them.
tests/broker/test_openapi.py fails when a registered /api/v1 or /oauth route is missing, so every new
route must be described where it is defined.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)

_REJECTED_TOKEN = {
    "type": "string", "writeOnly": True,
    "description": "An upstream token the upstream refused (401). govern fetches a new one only if this is still "
                   "the token it holds, so concurrent reports cause one upstream call (docs/upstream-tokens.md)."}
_PROBLEM = {"description": "RFC 9457 problem details",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_EDGE_400 = {"description": "Malformed request: a NUL character, JSON nested too deep, a bad Content-Length "
                             "(RFC 9457 problem details)",
             "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_OAUTH_ERROR = {"description": "RFC 6749 section 5.2 error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}}

DOCUMENT: dict = {
    "openapi": "3.1.0",
    "info": {"title": "govern", "version": "1",
             "description": "Governs how integrations authenticate to the systems they connect."},
    "paths": {
        "/oauth/token": {"post": {
            "summary": "Issue a govern access token (RFC 6749 client_credentials grant)",
            "operationId": "issueAccessToken",
            "security": [{"clientSecretBasic": []}, {}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["grant_type"],
                "properties": {
                    "grant_type": {"const": "client_credentials"},
                    "scope": {"type": "string", "description": "space-delimited; within the user's allowed scopes"},
                    "client_assertion_type": {"const": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
                    "client_assertion": {"type": "string", "description": "private_key_jwt (RFC 7523)"}}}}}},
            "responses": {
                "200": {"description": "A short-lived, scoped access token (a JWT signed by /oauth/jwks.json)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AccessToken"}}}},
                "400": _OAUTH_ERROR, "401": _OAUTH_ERROR, "429": _OAUTH_ERROR, "500": _OAUTH_ERROR,
                "503": _OAUTH_ERROR}}},
        "/oauth/jwks.json": {"get": {
            "summary": "govern's public token-signing keys (RFC 7517)", "operationId": "getJwks",
            "responses": {"200": {"description": "JWK Set", "content": {"application/json": {"schema": {
                "type": "object", "required": ["keys"], "properties": {"keys": {"type": "array",
                                                                                "items": {"type": "object"}}}}}}}}}},
        "/.well-known/oauth-authorization-server": {"get": {
            "summary": "Authorization server metadata (RFC 8414)", "operationId": "getOAuthMetadata",
            "responses": {"200": {"description": "metadata", "content": {"application/json": {"schema": {
                "type": "object", "required": ["issuer", "token_endpoint", "jwks_uri"]}}}}}}},
        "/api/v1/named-credentials/{name}/token": {"post": {
            "summary": "An upstream access token for the caller's principal of a named credential",
            "description": "Authenticated with a govern access token; decided by the permission sets and the "
                           "guardrail policies; every decision is logged. Never returns refresh tokens or secrets. "
                           "Serves OAuth credentials only: a named credential holding a static secret (basic, "
                           "api_key_header, custom_header) answers 400 `proxy_only_credential`; call it through "
                           "`/api/v1/named-credentials/{name}/proxy/{path}`. The token's scopes are the granted "
                           "ones (the request's, inside the permission sets, the govern token and the user's "
                           "allowed scopes); an empty intersection is 403 `deny:no_grantable_scope`.",
            "operationId": "getUpstreamToken",
            "security": [{"governAccessToken": []}],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": False, "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "scope": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "rejected_token": _REJECTED_TOKEN}}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                    "scope": {"type": "string"}, "rejected_token": _REJECTED_TOKEN}}}}},
            "responses": {
                "200": {"description": "The upstream token", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/UpstreamToken"}}}},
                # 409 principal_needs_reconnect: the upstream refused the stored refresh token (no upstream call
                # is made until the principal is reconnected).
                "400": _PROBLEM, "401": _PROBLEM, "403": _PROBLEM, "404": _PROBLEM, "409": _PROBLEM, "422": _PROBLEM,
                "502": _PROBLEM, "503": _PROBLEM}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "operationId": "getOpenApi",
                                         "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        "/healthz": {"get": {"summary": "Alive", "operationId": "healthz",
                             "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "Database, secret store and cache reachable", "operationId": "readyz",
                            "responses": {"200": {"description": "ready"}, "503": {"description": "degraded"}}}},
    },
    "components": {
        "securitySchemes": {
            "clientSecretBasic": {"type": "http", "scheme": "basic"},
            "governAccessToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "adminToken": {"type": "http", "scheme": "bearer", "description": "an admin token (gvn_...); "
                           "the operation's x-govern-role names the least role (auditor, operator, admin)"},
        },
        "schemas": {
            "AccessToken": {"type": "object", "required": ["access_token", "token_type", "expires_in"],
                            "properties": {"access_token": {"type": "string"}, "token_type": {"const": "Bearer"},
                                           "expires_in": {"type": "integer"}, "scope": {"type": "string"}}},
            "UpstreamToken": {"type": "object", "required": ["access_token", "token_type"], "additionalProperties": False,
                              "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                                             "expires_in": {"type": ["integer", "null"]},
                                             "scope": {"type": "string"}}},
            "OAuthError": {"type": "object", "required": ["error"], "properties": {
                "error": {"enum": ["invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                                   "unsupported_grant_type", "invalid_scope", "server_error",
                                   "temporarily_unavailable", "slow_down"]},
                "error_description": {"type": "string"}}},
            "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "code": {"type": "string"}, "detail": {"type": "string"}, "instance": {"type": "string"},
                "correlation_id": {"type": "string"},
                "rule": {"type": "string", "description": "the deciding rule of an access_denied problem"},
                "errors": {"type": "array", "description": "validation_failed: every error at once",
                           "items": {"type": "object", "properties": {"location": {"type": "string"},
                                                                      "message": {"type": "string"}}}}}},
            "SecretStatus": {"type": "object", "required": ["owner_kind", "owner", "field", "status"], "properties": {
                "ref": {"type": ["string", "null"]}, "owner_kind": {"enum": ["credential", "integration_user"]},
                "owner": {"type": "string"}, "principal": {"type": ["string", "null"]}, "field": {"type": "string"},
                "store": {"type": ["string", "null"]}, "version": {"type": ["integer", "null"]},
                "set_at": {"type": ["string", "null"], "format": "date-time"},
                "status": {"type": "string", "description": 'e.g. "set on 2026-01-02, version 3"'}}},
            "QueuedCall": {"type": "object", "required": ["id", "status"], "properties": {
                "id": {"type": "integer"}, "status": {"enum": ["queued", "delivering", "delivered", "dead"]},
                "attempts": {"type": "integer"}, "response_status": {"type": ["integer", "null"]},
                "last_status": {"type": ["integer", "null"]},
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"}}},
            "BreakerState": {"type": "object", "required": ["system", "state"], "properties": {
                "id": {"type": "integer"}, "system": {"type": "string"},
                "state": {"enum": ["closed", "open", "half_open"]}}},
            "Plan": {"type": "object", "required": ["dry_run", "applied", "changes"], "properties": {
                "dry_run": {"type": "boolean"}, "prune": {"type": "boolean"}, "applied": {"type": "boolean"},
                "counts": {"type": "object"}, "summary": {"type": "string"},
                "unchanged": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                "changes": {"type": "array", "items": {"type": "object", "required": ["kind", "id", "action"]}}}},
            "Finding": {"type": "object", "required": ["id", "rule_id", "severity"], "properties": {
                "id": {"type": "integer"}, "rule_id": {"type": "string"},
                "severity": {"enum": ["critical", "high", "medium", "low", "info"]}, "status": {"type": "string"},
                "subject_kind": {"type": "string"}, "subject": {"type": "string"}, "title": {"type": "string"},
                "source": {"type": ["string", "null"]}}},
            "RotationRun": {"type": "object", "required": ["id", "secret", "state"], "properties": {
                "id": {"type": "integer"}, "secret": {"type": "string"}, "rotator": {"type": "string"},
                "state": {"type": "string"}, "system": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
                "pending_version": {"type": ["integer", "null"]}, "steps": {"type": "array"},
                "error": {"type": ["string", "null"]},
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"}}},
        },
    },
}


def document() -> dict:
    """DOCUMENT with every blueprint's OPENAPI_PATHS merged in (a path defined twice is a bug: it fails loudly)."""
    from govern.api import breakers, connect, decisions, findings, landscape, proxy, rotations, secrets

    merged = {**DOCUMENT, "paths": dict(DOCUMENT["paths"])}
    for module in (secrets, proxy, breakers, landscape, findings, rotations, connect, decisions):
        for path, operations in module.OPENAPI_PATHS.items():
            clash = set(merged["paths"].get(path, {})) & set(operations)
            if clash:
                raise ValueError(f"{module.__name__} describes {sorted(clash)} {path} again")
            merged["paths"][path] = {**merged["paths"].get(path, {}), **operations}
    # govern/api/edge.py refuses malformed requests on every route before its view runs (a NUL character,
    # JSON nested too deep, a Content-Length that is not a number): every operation can answer 400.
    for path, operations in merged["paths"].items():
        merged["paths"][path] = {method: {**op, "responses": {**op["responses"], "400": op["responses"].get(
            "400", _EDGE_400)}} for method, op in operations.items()}
    return merged


@bp.get("/api/v1/openapi.json")
def openapi():
    return jsonify(document())
