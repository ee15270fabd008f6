"""Sign-in, sessions, CSRF and lockout for the web console (Flask test client, injected clock, no sleeping)."""
from __future__ import annotations

import pytest

from tests.admin.conftest import PASSWORD, csrf_from, sign_in


@pytest.fixture
def signed_in(client, console_users, clock):
    response = sign_in(client, "admin-user")
    assert response.status_code == 302
    return client


def test_anonymous_visitors_are_sent_to_the_sign_in_page(client, console_users):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_sign_in_opens_the_dashboard_and_records_the_action(signed_in, services):
    from sqlmodel import select

    from govern.store.tables import AdminAction

    page = signed_in.get("/admin/")
    assert page.status_code == 200
    assert "admin-user" in page.get_data(as_text=True)
    with services.sessions() as s:
        actions = [(a.actor, a.action) for a in s.exec(select(AdminAction))]
    assert ("admin-user", "sign_in") in actions


def test_the_session_cookie_is_httponly_and_samesite(client, console_users, clock):
    response = sign_in(client, "admin-user")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_the_session_cookie_is_secure_when_configured(services, console_users, clock):
    from govern.app import create_app

    # Production sets SESSION_COOKIE_SECURE from settings.production; here it is switched on by hand.
    client = create_app({"TESTING": True, "SESSION_COOKIE_SECURE": True}, services=services).test_client()
    page = client.get("/admin/login", base_url="https://localhost")
    response = client.post("/admin/login", base_url="https://localhost",
                           headers={"Referer": "https://localhost/admin/login"},  # Flask-WTF's HTTPS referrer check
                           data={"username": "admin-user", "password": PASSWORD,
                                 "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert "; Secure" in response.headers["Set-Cookie"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(client, console_users, clock):
    wrong = sign_in(client, "admin-user", "not the password at all")
    clock.advance(minutes=1)
    unknown = sign_in(client, "nobody-here", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401

    def message(r):
        text = r.get_data(as_text=True)
        return text[text.index('id="gv-login-error"'):].split("</div>")[0]

    assert message(wrong) == message(unknown)


def test_repeated_failures_limit_the_account_from_that_address_only(client, console_users, clock, services):
    """Failed sign-ins are limited per (account, address): the guesser is stopped with 429, the same
    account still signs in from another address (no account-wide lockout; docs/security.md)."""
    limit = services.rate_limits.item("console_failures_pair").amount
    for _ in range(limit):
        assert sign_in(client, "operator-user", "wrong").status_code == 401
    limited = sign_in(client, "operator-user", PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert 'data-code="rate_limited"' in limited.get_data(as_text=True)
    other = client.application.test_client()
    elsewhere = {"REMOTE_ADDR": "10.9.9.9"}
    page = other.get("/admin/login", environ_base=elsewhere)
    response = other.post("/admin/login", environ_base=elsewhere, data={
        "username": "operator-user", "password": PASSWORD, "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302


def test_a_post_without_a_csrf_token_is_refused(signed_in, services):
    response = signed_in.post("/admin/logout")
    assert response.status_code == 400
    assert "text/html" in response.content_type
    # Still signed in: the forged sign-out did nothing.
    assert signed_in.get("/admin/").status_code == 200


def test_a_post_with_a_wrong_csrf_token_is_refused(signed_in):
    response = signed_in.post("/admin/logout", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert signed_in.get("/admin/").status_code == 200


def test_a_cross_site_post_is_refused_even_with_a_token(signed_in):
    token = csrf_from(signed_in.get("/admin/").get_data(as_text=True))
    response = signed_in.post("/admin/logout", data={"csrf_token": token},
                              headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert signed_in.get("/admin/").status_code == 200


def test_sign_in_without_a_csrf_token_is_refused(client, console_users):
    response = client.post("/admin/login", data={"username": "admin-user", "password": PASSWORD})
    assert response.status_code == 400


def test_logout_ends_the_session_even_for_a_copied_cookie(signed_in):
    cookie = signed_in.get_cookie("govern_session").value
    token = csrf_from(signed_in.get("/admin/").get_data(as_text=True))
    response = signed_in.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert "/admin/login" in signed_in.get("/admin/").headers["Location"]
    # Replaying the cookie captured before sign-out does not bring the session back.
    signed_in.set_cookie("govern_session", cookie)
    assert signed_in.get("/admin/").status_code == 302


def test_a_session_expires_after_its_lifetime(signed_in, clock, services):
    lifetime = services.settings.session_lifetime_seconds
    clock.advance(seconds=lifetime - 5)
    assert signed_in.get("/admin/").status_code == 200
    clock.advance(seconds=10)
    response = signed_in.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_disabling_a_user_ends_their_session(signed_in, services):
    from sqlmodel import select

    from govern.store.db import session_scope
    from govern.store.tables import AdminUser

    with session_scope(services.sessions) as s:
        s.exec(select(AdminUser).where(AdminUser.external_id == "admin-user")).one().disabled = True
    assert signed_in.get("/admin/").status_code == 302


def test_next_never_redirects_off_site(client, console_users, clock):
    page = client.get("/admin/login")
    response = client.post("/admin/login", data={"username": "admin-user", "password": PASSWORD,
                                                 "next": "https://evil.example/",
                                                 "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.headers["Location"].endswith("/admin/")


def test_console_errors_are_html_and_the_api_keeps_problem_json(signed_in, client):
    page = signed_in.get("/admin/no-such-page")
    assert page.status_code == 404
    assert "text/html" in page.content_type
    assert "Traceback" not in page.get_data(as_text=True)
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.content_type == "application/problem+json"


def test_failures_for_one_account_do_not_lock_other_accounts_out(client, console_users, clock, services):
    """Behind one proxy address, one person guessing cannot lock every admin out."""
    limit = services.rate_limits.item("console_failures_pair").amount
    for i in range(limit * 3):
        assert sign_in(client, f"guess-{i % 3}", "wrong").status_code in (401, 429)
    assert sign_in(client, "auditor-user").status_code == 302
