"""The OpenAPI document covers every /api/v1 and /oauth route the app registers."""
from __future__ import annotations

import re


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_api_and_oauth_route_is_documented(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1", "/oauth", "/.well-known")):
            continue
        path = _openapi_path(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in doc["paths"].get(path, {}):
                missing.append(f"{method} {path}")
    assert not missing, f"describe these views with govern.api.spec.api.validate: {missing}"
    for path in ("/oauth/token", "/oauth/jwks.json", "/api/v1/named-credentials/{name}/token", "/healthz", "/readyz"):
        assert path in doc["paths"]


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_well_formed(client):
    """OpenAPI 3.1 basics: every operation has responses, a unique operationId, its path parameters declared,
    error responses as problem+json; every $ref resolves."""
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    operation_ids = []
    for path, operations in doc["paths"].items():
        declared_in_path = set(re.findall(r"{([^}]+)}", path))
        for method, op in operations.items():
            assert method in {"get", "put", "post", "delete", "patch"}, (path, method)
            assert op.get("responses"), f"{method} {path} has no responses"
            assert op.get("summary"), f"{method} {path} has no summary"
            operation_ids.append(op["operationId"])
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == declared_in_path, f"{method} {path}: path parameters {params}"
            for p in op.get("parameters", []):
                assert p["in"] != "path" or p["required"] is True
            for scheme in op.get("security", []):
                assert set(scheme) <= set(doc["components"]["securitySchemes"])
            for status, response in op["responses"].items():
                assert response.get("description"), f"{method} {path} {status}"
                if status.startswith(("4", "5")) and path.startswith("/api/v1"):
                    assert "application/problem+json" in response["content"], f"{method} {path} {status}"
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    for ref in set(_refs(doc)):
        name = ref.removeprefix("#/components/schemas/")
        assert name in doc["components"]["schemas"], f"unresolved {ref}"
