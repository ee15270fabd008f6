"""SSRF battery: crafted paths that try to leave the named credential's base URL are all refused with
400 problem+json `path_not_allowed`, before any upstream call (OWASP SSRF Prevention Cheat Sheet)."""
from __future__ import annotations

import pytest

from govern.broker.proxy.errors import PathNotAllowed
from govern.broker.proxy.paths import join_under, normalise_path, path_matches, same_origin_under
from tests.proxy.conftest import CALLER

CRAFTED = [
    "../admin",
    "a/../../admin",
    "%2e%2e/admin",
    "%2E%2E/%2E%2E/etc/passwd",
    "a/%252e%252e/b",  # double encoding
    "..%2fadmin",  # encoded slash
    "a%2f..%2fb",
    "%5c..%5cadmin",  # encoded backslash
    "a/%00/b",  # NUL
    "a%0d%0aX-Injected:%20yes",  # CRLF
    "a/%7f",
    "@evil.example.com/x",
    "user:pass@127.0.0.1/x",
    "http://evil.example.com/x",
    "https:/evil.example.com",
    "//evil.example.com/x",
    "/%2f/evil.example.com",
    "%2f%2fevil.example.com/x",
    "//[::1]:6379/",
    "//2130706433/x",  # decimal IPv4 host
    "http:%2f%2f0x7f.0.0.1/x",
    "%EF%BC%8E%EF%BC%8E/admin",  # fullwidth dots, folded by NFKC
    "a/./b",
    "a/%2e/b",
    "a//b",
    "javascript:alert(1)",
    "%u002e%u002e/admin",  # IIS-style, malformed percent-encoding
    "a/%",
    "..;/admin",  # Tomcat path parameter trick
    "a/..;x/..;/b",
    "..%c0%af..%c0%afetc/passwd",  # overlong UTF-8 slash (IIS)
    "%c0%ae%c0%ae/admin",  # overlong UTF-8 dots
]


@pytest.mark.parametrize("raw", CRAFTED)
def test_crafted_paths_are_refused_before_any_upstream_call(env, raw):
    r = env.client.get(env.url(raw), headers=CALLER)
    assert r.status_code == 400, (raw, r.status_code, r.get_data(as_text=True))
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["code"] == "path_not_allowed"
    assert env.upstream.count == 0


def test_the_battery_is_big_enough():
    assert len(CRAFTED) >= 15


@pytest.mark.parametrize("raw", CRAFTED)
def test_normalise_refuses_every_crafted_path(raw):
    with pytest.raises(PathNotAllowed):
        normalise_path(raw)


@pytest.mark.parametrize("raw, expected", [
    ("accounts/42", "/accounts/42"),
    ("", "/"),
    ("a/b/", "/a/b/"),
    ("names/J%C3%BCrgen", "/names/J%C3%BCrgen"),
    ("a%20b", "/a%20b"),
    ("services/data/v60.0/sobjects/Account", "/services/data/v60.0/sobjects/Account"),
])
def test_normal_paths_pass(raw, expected):
    assert normalise_path(raw) == expected


def test_join_stays_under_the_base():
    assert join_under("https://erp.example.com/api/", "/x", "a=1") == "https://erp.example.com/api/x?a=1"
    with pytest.raises(PathNotAllowed):
        join_under("https://erp.example.com/api", "@evil.com/x")


def test_redirect_targets():
    base = "https://erp.example.com/api"
    assert same_origin_under(base, "/api/x")
    assert same_origin_under(base, "https://erp.example.com/api/y")
    assert not same_origin_under(base, "https://evil.example.com/api/x")
    assert not same_origin_under(base, "//evil.example.com/api/x")
    assert not same_origin_under(base, "/other")
    assert not same_origin_under(base, "/api/../admin")


def test_path_patterns():
    assert path_matches("/**", "/a/b")
    assert path_matches("/accounts/*", "/accounts/1")
    assert not path_matches("/accounts/*", "/accounts/1/x")
    assert path_matches("/accounts/**", "/accounts")
    assert path_matches("/accounts/**", "/accounts/1/x")
    assert not path_matches("/accounts/**", "/accountsx")


def test_the_empty_path_reaches_the_base(env):
    assert env.client.get(env.url(""), headers=CALLER).status_code == 200
    assert env.upstream.last().path == "/api/"


def test_redirect_to_another_host_is_not_followed(env):
    env.upstream.redirect_next("http://169.254.169.254/latest/meta-data/")
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 502 and r.get_json()["code"] == "upstream_redirect_refused"
    assert env.upstream.count == 1


def test_same_origin_redirect_is_followed_only_when_allowed(env):
    env.upstream.redirect_next("/api/moved")
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 302 and r.headers["Location"] == "/api/v1/named-credentials/erp-api/proxy/moved"
    env.configure(retry={"redirects": 2})
    env.upstream.redirect_next("/api/moved")
    r = env.client.get(env.url("x"), headers=CALLER)
    assert r.status_code == 200 and env.upstream.last().path == "/api/moved"
    assert env.upstream.last().headers["Authorization"].startswith("Bearer ")


def test_refusals_are_logged_as_decisions(env):
    env.client.get(env.url("%2e%2e/admin"), headers=CALLER)
    record = env.log.records[-1]
    assert record["decision"].allowed is False and record["decision"].rules == ("path_not_allowed",)
    assert record["request"].path == "%2e%2e/admin" and record["upstream_status"] is None


@pytest.mark.parametrize("query", ["q=100%", "a=%zz", "a=%4", "a=%41%"])
def test_a_query_with_a_stray_percent_is_refused_before_any_upstream_call(env, query):
    # urllib3 would re-encode every "%" of such a query, so "%41%" would reach the upstream as "%2541%25".
    r = env.client.get(env.url("accounts") + "?" + query, headers=CALLER)
    assert r.status_code == 400 and r.get_json()["code"] == "path_not_allowed"
    assert env.upstream.count == 0


def test_a_query_reaches_the_upstream_as_rfc_3986_writes_it(env):
    r = env.client.get(env.url("accounts") + "?filter[name]=a%2fb&x=%7E|y", headers=CALLER)
    assert r.status_code == 200
    assert env.upstream.last().query == "filter%5Bname%5D=a%2Fb&x=%7E%7Cy"
