"""Issue #14: /metrics names systems and credentials with allow/deny counts; it needs a bearer token
(GOVERN_METRICS_TOKEN), required in production unless metrics are off."""
from __future__ import annotations

import base64

import pytest

from govern.config import load_settings
from govern.errors import ConfigurationError

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def metrics_client(services, settings):
    from govern.app import create_app
    from govern.bootstrap import build_services

    svc = build_services(settings.with_overrides(metrics_token=TOKEN))
    svc.metrics.token_requests.labels(system="erp", named_credential="erp-api", outcome="denied").inc()
    yield create_app({"TESTING": True}, services=svc).test_client()
    svc.close()


@pytest.mark.parametrize("authorization", [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {TOKEN[:-1]}",  # a prefix
    f"Bearer {TOKEN}x",  # an extension
    f"Basic {base64.b64encode(f'prometheus:{TOKEN}'.encode()).decode()}",
    f"Token {TOKEN}",
    TOKEN,
])
def test_a_scrape_without_the_token_is_refused_and_names_nothing(metrics_client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = metrics_client.get("/metrics", headers=headers)
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == "metrics_unauthorized"
    assert "WWW-Authenticate" in resp.headers
    assert "erp-api" not in resp.get_data(as_text=True) and TOKEN not in resp.get_data(as_text=True)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_positive_control_the_token_opens_metrics(metrics_client, scheme):
    resp = metrics_client.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert resp.status_code == 200
    assert 'named_credential="erp-api",outcome="denied"' in resp.get_data(as_text=True)


def test_metrics_can_be_turned_off(services, settings):
    from govern.app import create_app
    from govern.bootstrap import build_services

    svc = build_services(settings.with_overrides(metrics_enabled=False))
    try:
        resp = create_app({"TESTING": True}, services=svc).test_client().get("/metrics")
        assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
    finally:
        svc.close()


PRODUCTION = {"GOVERN_ENV": "production", "GOVERN_SECRET_KEY": "k" * 40, "GOVERN_MASTER_KEY": "x",
              "GOVERN_DATABASE_URL": "postgresql://db/govern", "GOVERN_PUBLIC_URL": "https://govern.example.com"}


@pytest.mark.parametrize("extra", [{}, {"GOVERN_METRICS_TOKEN": "short"}, {"GOVERN_METRICS_ENABLED": "true"}])
def test_production_refuses_open_metrics(tmp_path, extra):
    with pytest.raises(ConfigurationError, match="GOVERN_METRICS_TOKEN"):
        load_settings({**PRODUCTION, "GOVERN_HOME": str(tmp_path), **extra})


@pytest.mark.parametrize("extra", [{"GOVERN_METRICS_TOKEN": TOKEN}, {"GOVERN_METRICS_ENABLED": "false"}])
def test_positive_control_production_with_a_token_or_metrics_off(tmp_path, extra):
    assert load_settings({**PRODUCTION, "GOVERN_HOME": str(tmp_path), **extra}).production


def test_a_malformed_switch_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="GOVERN_METRICS_ENABLED"):
        load_settings({"GOVERN_HOME": str(tmp_path), "GOVERN_METRICS_ENABLED": "maybe"})
