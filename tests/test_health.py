from __future__ import annotations


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["database"] == "ok"


def test_unknown_path_is_problem_json_with_correlation_id(client):
    r = client.get("/api/v1/nope", headers={"X-Correlation-ID": "abc-123"})
    assert r.status_code == 404
    assert r.mimetype == "application/problem+json"
    assert r.json["code"] == "not_found"
    assert r.json["correlation_id"] == "abc-123"
    assert r.headers["X-Correlation-ID"] == "abc-123"


def test_readyz_reports_a_broken_dependency(app, services):
    def broken():
        raise OSError("down")

    services.health_checks["cache"] = broken
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["checks"]["cache"] == "unavailable"
    assert r.json["checks"]["database"] == "ok"
