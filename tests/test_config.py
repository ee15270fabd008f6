from __future__ import annotations

import pytest

from govern.config import load_settings
from govern.errors import ConfigurationError


def test_defaults_use_instance_folder(tmp_path):
    s = load_settings({"GOVERN_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{(tmp_path / 'govern.db').resolve()}"
    assert s.secret_store == "local" and not s.production


def test_production_refuses_unsafe_settings(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        load_settings({"GOVERN_HOME": str(tmp_path), "GOVERN_ENV": "production"})
    text = str(err.value)
    assert "GOVERN_SECRET_KEY" in text and "SQLite" in text


def test_production_accepts_safe_settings(tmp_path):
    s = load_settings({
        "GOVERN_HOME": str(tmp_path), "GOVERN_ENV": "production", "GOVERN_SECRET_KEY": "k" * 40,
        "GOVERN_DATABASE_URL": "postgresql://db/govern", "GOVERN_MASTER_KEY": "x",
        "GOVERN_PUBLIC_URL": "https://govern.example.com", "GOVERN_METRICS_TOKEN": "m" * 32,
    })
    assert s.production


@pytest.mark.parametrize("env", [
    {"GOVERN_ENV": "staging"},
    {"GOVERN_SECRET_STORE": "s3"},
    {"GOVERN_TRUSTED_PROXIES": "10.0.0.0/33"},
    {"GOVERN_TOKEN_LEEWAY_SECONDS": "soon"},
    {"GOVERN_PROXY_MAX_CONNECTIONS_PER_ORIGIN": "0"},
    {"GOVERN_PROXY_MAX_CONNECTIONS_PER_ORIGIN": "many"},
    {"GOVERN_PROXY_MAX_DECODED_BYTES": "1024"},
    {"GOVERN_PROXY_MAX_DECODED_BYTES": "32MiB"},
])
def test_malformed_settings_are_refused(tmp_path, env):
    with pytest.raises(ConfigurationError):
        load_settings({"GOVERN_HOME": str(tmp_path), **env})


def test_the_proxy_transport_bounds_come_from_the_settings(tmp_path):
    from govern.bootstrap import build_services

    services = build_services(load_settings({"GOVERN_HOME": str(tmp_path),
                                             "GOVERN_PROXY_MAX_CONNECTIONS_PER_ORIGIN": "3",
                                             "GOVERN_PROXY_MAX_DECODED_BYTES": "65536"}))
    try:
        transport = services.proxy.transport
        assert (transport.max_connections, transport.max_decoded_bytes) == (3, 65536)
    finally:
        services.close()


def test_cli_reports_config_error_in_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "GOVERN_HOME": str(tmp_path), "GOVERN_ENV": "production"}
    proc = subprocess.run([sys.executable, "-m", "govern", "db", "current"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: refusing to start in production")
    assert len(proc.stderr.strip().splitlines()) == 1
