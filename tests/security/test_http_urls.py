"""Issue #14: plain-http upstream URLs (token, authorize and named-credential URLs) are refused by
`govern apply` in production and warned about in development; loopback hosts are allowed in development
without a warning (a sandbox or a test server on this machine)."""
from __future__ import annotations

import base64
import os

import pytest

DOC = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: erp, name: ERP, kind: erp, scopes: [orders.read]}}
credentials:
  - id: erp-rt
    system: erp
    protocol: oauth2_refresh_token
    token_url: {token_url}
    authorize_url: {authorize_url}
    client_id: erp-rt-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: alice, subject: alice}}]
named_credentials:
  - {{id: erp-api, credential: erp-rt, url: "{url}", methods: [GET], paths: ["/api/**"]}}
"""
HTTPS = {"token_url": "https://erp.example.com/token", "authorize_url": "https://erp.example.com/authorize",
         "url": "https://erp.example.com/api"}
PLAIN = [
    ("token_url", "http://erp.example.com/token", "credentials[0].token_url"),
    ("authorize_url", "http://erp.example.com/authorize", "credentials[0].authorize_url"),
    ("url", "http://erp.example.com/api", "named_credentials[0].url"),
    ("token_url", "HTTP://ERP.EXAMPLE.COM/token", "credentials[0].token_url"),
    ("url", "http://10.0.0.7:8080/api", "named_credentials[0].url"),
]
LOOPBACK = [("token_url", "http://127.0.0.1:9000/token"), ("url", "http://localhost:9000/api"),
            ("url", "http://[::1]:9000/api"), ("authorize_url", "http://127.5.5.5/authorize")]


def _write(tmp_path, **urls):
    path = tmp_path / "governance.yaml"
    path.write_text(DOC.format(**{**HTTPS, **urls}))
    return str(path)


def _rows(services):
    import sqlalchemy as sa

    from govern.store.tables import ExternalCredential

    with services.sessions() as s:
        return s.execute(sa.select(ExternalCredential.token_url)).scalars().all()


@pytest.mark.parametrize("field,url,where", PLAIN)
def test_development_applies_with_a_warning(runner, tmp_path, services, field, url, where):
    result = runner.invoke(["apply", "-f", _write(tmp_path, **{field: url})])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and where in result.output and "plain http" in result.output
    assert len(_rows(services)) == 1


@pytest.mark.parametrize("field,url", LOOPBACK)
def test_development_allows_loopback_without_a_warning(runner, tmp_path, field, url):
    result = runner.invoke(["apply", "-f", _write(tmp_path, **{field: url})])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output


def test_positive_control_https_applies_silently(runner, tmp_path, services):
    result = runner.invoke(["apply", "-f", _write(tmp_path)])
    assert result.exit_code == 0 and "warning:" not in result.output
    assert _rows(services) == [HTTPS["token_url"]]


@pytest.fixture
def production_db(request, monkeypatch, tmp_path):
    """A PostgreSQL database for the production-mode CLI, whatever GOVERN_TEST_DATABASE says."""
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("GOVERN_DATABASE_URL", url)
    return url


def _production_env(monkeypatch):
    for name, value in {"GOVERN_ENV": "production", "GOVERN_SECRET_KEY": "k" * 40,
                        "GOVERN_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                        "GOVERN_PUBLIC_URL": "https://govern.example.com",
                        "GOVERN_METRICS_TOKEN": "m" * 32}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.postgres
@pytest.mark.parametrize("field,url,where", PLAIN + [(f, u, None) for f, u in LOOPBACK])
def test_production_refuses_plain_http_and_applies_nothing(runner, tmp_path, monkeypatch, production_db,
                                                           field, url, where):
    import sqlalchemy as sa

    from govern.store.db import make_engine

    _production_env(monkeypatch)
    result = runner.invoke(["apply", "-f", _write(tmp_path, **{field: url})])
    assert result.exit_code == 2, result.output
    assert "plain http" in result.output and "refused in production" in result.output
    if where:
        assert where in result.output
    engine = make_engine(production_db)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM external_credential")).scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_positive_control_production_applies_https(runner, tmp_path, monkeypatch, production_db):
    _production_env(monkeypatch)
    result = runner.invoke(["apply", "-f", _write(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "plain http" not in result.output


def test_the_api_returns_warnings_in_the_plan(client, admin_token, tmp_path):
    text = DOC.format(**{**HTTPS, "token_url": "http://erp.example.com/token"})
    resp = client.post("/api/v1/apply", data=text, content_type="application/yaml",
                       headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    warnings = resp.get_json()["warnings"]
    assert [w["path"] for w in warnings] == ["credentials[0].token_url"]
