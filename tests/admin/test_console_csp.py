"""The console's Content-Security-Policy is on every response under /admin, for every role, on error pages
and before sign-in; the API keeps its own headers; the theme CSS that govern serves imports nothing."""
from __future__ import annotations

import re

import pytest

from govern.admin.lockdown import CONTENT_SECURITY_POLICY
from tests.admin.conftest import sign_in
from tests.admin.test_console_views import PAGES, landscape  # noqa: F401 - fixture


def test_signed_out_pages_and_assets_carry_the_policy(client):
    for path in ("/admin/login", "/admin/", "/admin/theme/bootstrap.min.css",
                 "/admin/console-static/console.js", "/admin/no-such-page"):
        response = client.get(path)
        assert response.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY, path
        assert response.headers.get("X-Frame-Options") == "DENY", path


@pytest.mark.parametrize("role", ["admin", "operator", "auditor"])
def test_every_page_carries_the_policy_for_every_role(client, console_users, clock, landscape, role):
    sign_in(client, console_users[role])
    for path in PAGES + ["/admin/integration_users/save/", "/admin/no-such-page"]:
        response = client.get(path)
        assert response.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY, (role, path)
        html = response.get_data(as_text=True)
        # No inline script, no inline handler, no style attribute: the policy would refuse them.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), (role, path)
        assert not re.search(r"\son(?:click|submit|change|load)=", html, re.I), (role, path)
        assert not re.search(r"\sstyle=", html, re.I), (role, path)


def test_the_api_is_not_given_the_console_policy(client):
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def test_the_theme_is_served_without_its_font_import(client):
    css = client.get("/admin/theme/bootstrap.min.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    text = css.get_data(as_text=True)
    assert "@import" not in text and "googleapis" not in text
    assert ".btn-primary" in text  # the theme itself is all there
