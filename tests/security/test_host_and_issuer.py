"""Issue #14: the Host header is not trusted. The client-assertion audience, the metadata URLs and the
connect redirect_uri come from GOVERN_PUBLIC_URL; X-Forwarded-Proto counts only from a trusted proxy;
no Host or scheme makes a 500. Every group has a positive control."""
from __future__ import annotations

import pytest

from govern.config import load_settings
from govern.errors import ConfigurationError
from tests.security.auth_landscape import (PUBLIC_URL, TOKEN_URL, applied, assertion, govern_instance,  # noqa: F401
                                           oauth_error, token_with_assertion, token_with_secret)

FORGED_HOSTS = ["evil.example", "attacker.example:8443", "127.0.0.1:9999", "localhost",
                "govern.example.com.evil.example", "[::1]:8000"]


@pytest.mark.parametrize("host", FORGED_HOSTS)
def test_an_assertion_for_another_host_is_refused_even_with_that_host(applied, govern_instance, host):
    _, client = govern_instance()
    for scheme in ("http", "https"):
        signed = assertion(applied.client_key, aud=f"{scheme}://{host}/oauth/token")
        oauth_error(token_with_assertion(client, signed, headers={"Host": host}), 401, "invalid_client")
        signed = assertion(applied.client_key, aud=f"{scheme}://{host}/oauth/token")
        oauth_error(token_with_assertion(client, signed, headers={"X-Forwarded-Host": host}), 401, "invalid_client")


@pytest.mark.parametrize("host", [None, *FORGED_HOSTS])
def test_positive_control_the_configured_token_url_is_accepted_whatever_the_host(applied, govern_instance, host):
    _, client = govern_instance()
    resp = token_with_assertion(client, assertion(applied.client_key, aud=TOKEN_URL),
                                headers={"Host": host} if host else {})
    assert resp.status_code == 200, resp.get_data(as_text=True)


@pytest.mark.parametrize("headers", [
    {"Host": "evil.example"},
    {"X-Forwarded-Host": "evil.example"},
    {"X-Forwarded-Proto": "http"},
    {"Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
    {"Forwarded": "host=evil.example;proto=http"},
    {},
])
def test_metadata_urls_come_from_the_public_url(govern_instance, headers):
    _, client = govern_instance()
    meta = client.get("/.well-known/oauth-authorization-server", headers=headers).get_json()
    assert meta["token_endpoint"] == TOKEN_URL
    assert meta["jwks_uri"] == f"{PUBLIC_URL}/oauth/jwks.json"


@pytest.mark.parametrize("host", ["evil.example", "localhost", None])
def test_connect_redirect_uri_comes_from_the_public_url(applied, govern_instance, admin_token, host):
    from urllib.parse import parse_qs, urlsplit

    _, client = govern_instance()
    resp = client.post("/api/v1/credentials/erp-rt/principals/alice/connect", json={},
                       headers={"Authorization": f"Bearer {admin_token}", **({"Host": host} if host else {})})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    query = parse_qs(urlsplit(resp.get_json()["authorize_url"]).query)
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/oauth/callback"]


WEIRD_HOSTS = ["", "evil..example", "a b", "[::1", "host:notaport", "x" * 300, "\u00e9vil.example", "127.0.0.1:0",
               "evil.example/oauth/token?x=", "0"]
WEIRD_PROTOS = ["ftp", "https, http", "javascript", "", "HTTPS"]


@pytest.mark.parametrize("host", WEIRD_HOSTS)
def test_no_host_makes_a_500(applied, govern_instance, host):
    _, client = govern_instance(public_url="http://127.0.0.1:8000")
    for path, method in (("/oauth/token", "post"), ("/.well-known/oauth-authorization-server", "get"),
                         ("/healthz", "get"), ("/admin/login", "get")):
        resp = getattr(client, method)(path, headers={"Host": host}, data={"grant_type": "client_credentials"}
                                       if method == "post" else None)
        assert resp.status_code < 500, (path, resp.status_code)
        assert resp.status_code in (200, 400, 401, 404), (path, resp.status_code)  # 400: an unroutable Host
    # Positive control: the same instance issues a token for the right secret (a forged but routable Host).
    assert token_with_secret(client, headers={"Host": "evil.example"}).status_code == 200


@pytest.mark.parametrize("proto", WEIRD_PROTOS)
def test_no_forwarded_scheme_makes_a_500(applied, govern_instance, proto):
    _, client = govern_instance(trusted_proxies=("127.0.0.0/8",))
    resp = token_with_secret(client, headers={"X-Forwarded-Proto": proto})
    assert resp.status_code == 200, resp.get_data(as_text=True)


# --- X-Forwarded-Proto is believed only from GOVERN_TRUSTED_PROXIES ---------------------------------

def _scheme_seen(peer: str, proto: str | None, trusted=("10.0.0.0/8",)) -> str:
    import ipaddress

    from govern.app import TrustedForwardedProto

    seen = {}

    def inner(environ, start_response):
        seen["scheme"] = environ["wsgi.url_scheme"]
        seen["header"] = environ.get("HTTP_X_FORWARDED_PROTO")
        start_response("204 No Content", [])
        return [b""]

    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http"}
    if proto is not None:
        environ["HTTP_X_FORWARDED_PROTO"] = proto
    TrustedForwardedProto(inner, [ipaddress.ip_network(c) for c in trusted])(environ, lambda *a: None)
    assert seen["header"] is None  # never passed on: nothing downstream can read it by mistake
    return seen["scheme"]


@pytest.mark.parametrize("peer,proto", [
    ("203.0.113.9", "https"),  # an untrusted client claiming TLS
    ("203.0.113.9", "http"),
    ("10.0.0.5", "gopher"),  # a trusted proxy, but not a scheme
    ("10.0.0.5", "https, http"),  # the nearest (trusted) proxy's value wins: http
    ("not-an-ip", "https"),
])
def test_forwarded_proto_is_ignored_unless_a_trusted_proxy_sends_a_scheme(peer, proto):
    assert _scheme_seen(peer, proto) == "http"


@pytest.mark.parametrize("proto", ["https", "HTTPS", "http, https"])
def test_positive_control_a_trusted_proxy_sets_the_scheme(proto):
    assert _scheme_seen("10.0.0.5", proto) == "https"


# --- configuration ------------------------------------------------------------------------------------

PRODUCTION = {"GOVERN_ENV": "production", "GOVERN_SECRET_KEY": "k" * 40, "GOVERN_MASTER_KEY": "x",
              "GOVERN_DATABASE_URL": "postgresql://db/govern", "GOVERN_METRICS_TOKEN": "m" * 32}


@pytest.mark.parametrize("public_url", [None, "http://govern.example.com", "http://127.0.0.1:8000"])
def test_production_refuses_to_start_without_an_https_public_url(tmp_path, public_url):
    env = {**PRODUCTION, "GOVERN_HOME": str(tmp_path)}
    if public_url:
        env["GOVERN_PUBLIC_URL"] = public_url
    with pytest.raises(ConfigurationError, match="GOVERN_PUBLIC_URL"):
        load_settings(env)


@pytest.mark.parametrize("public_url", ["govern.example.com", "ftp://govern.example.com", "https://",
                                        "https://govern.example.com/?next=x", "https://user:pw@govern.example.com",
                                        "https://govern.example.com:99999"])
def test_a_malformed_public_url_is_refused_in_any_environment(tmp_path, public_url):
    with pytest.raises(ConfigurationError, match="GOVERN_PUBLIC_URL"):
        load_settings({"GOVERN_HOME": str(tmp_path), "GOVERN_PUBLIC_URL": public_url})


def test_positive_control_production_starts_with_an_https_public_url(tmp_path):
    settings = load_settings({**PRODUCTION, "GOVERN_HOME": str(tmp_path),
                              "GOVERN_PUBLIC_URL": "https://govern.example.com/"})
    assert settings.public_endpoint("/oauth/token") == "https://govern.example.com/oauth/token"


def test_development_defaults_to_loopback(tmp_path):
    assert load_settings({"GOVERN_HOME": str(tmp_path)}).public_url == "http://127.0.0.1:8000"
