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
    assert not missing, f"add these routes to govern/api/openapi.py: {missing}"
    for path in ("/oauth/token", "/oauth/jwks.json", "/api/v1/named-credentials/{name}/token", "/healthz", "/readyz"):
        assert path in doc["paths"]
