"""Connecting a per-user principal from the console, in headless Chromium against govern as `govern serve`
wires it (landscape from `govern apply`) and the fake authlib upstream (tests/fakes/oauth_server.py, which
consents at once):

- the admin clicks Reconnect on the principal's page, is asked first, goes through the upstream's authorize
  page and lands back on the principal's console page, which says "connected"; the decision record and the
  admin action journal name the admin; the new refresh token is the one stored, and the principal then gets a
  token through one call to govern's token endpoint;
- an operator and an auditor see no button, and their forged POSTs are refused;
- the upstream saying `access_denied`, and a state that is unknown or already used, show a readable message
  on the principal's page, not JSON;
- the callback of a flow started from the API still answers its plain page.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from sqlmodel import select

from govern.admin.lockdown import CONTENT_SECURITY_POLICY, policy
from govern.domain.secret import secret_ref_name
from govern.store.tables import AdminAction, Principal
from tests.admin.browser import browser, page_left, screenshot  # noqa: F401 - fixtures
from tests.admin.conftest import csrf_from
from tests.admin.test_console_audit_pages import RAW, make_users, no_overflow, session_of
from tests.admin.test_console_browser import sign_in, wait
from tests.admin.test_console_pages import _AXE_RUN, AXE
from tests.e2e.conftest import RT_CLIENT_SECRET, live, resources  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.db, pytest.mark.slow]

PAGE = "/admin/principals/details/?id=shop-rt/alice"


def _callback_client(live) -> None:
    live.upstream.register_client("shop-rt-client", secret=RT_CLIENT_SECRET, scope="orders.read",
                                  redirect_uris=[live.base + "/oauth/callback"])


def _stored_refresh_token(live) -> str:
    return live.services.secret_store.get(secret_ref_name("credential", "shop-rt", "alice", "refresh_token")).reveal()


def _connected_at(live):
    with live.services.sessions() as s:
        return s.exec(select(Principal).where(Principal.name == "alice")).one().connected_at


def test_the_admin_connects_a_principal_through_the_upstream_and_lands_back_connected(browser, live):
    make_users(live)
    _callback_client(live)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(live.upstream.authorize_url))
    # The upstream refuses alice's stored refresh token (invalid_grant): govern marks her for a reconnect.
    live.upstream.inject("invalid_grant", grant="refresh_token")
    refused = live.upstream_token(live.govern_token(), "shop-user-orders")
    assert refused.status_code != 200
    with live.services.sessions() as s:
        assert s.exec(select(Principal).where(Principal.name == "alice")).one().needs_reconnect_at is not None

    sign_in(browser, live.base, "admin-user")
    browser.set_window_size(1280, 900)
    browser.get(live.base + PAGE)
    state = wait(browser).until(EC.presence_of_element_located((By.ID, "gv-connection-state")))
    # Its state says since when, and why.
    assert state.find_element(By.CSS_SELECTOR, ".gv-state").get_attribute("data-state") == "needs_reconnect"
    assert "needs a reconnect" in state.text and "invalid_grant" in state.find_element(By.CSS_SELECTOR, ".gv-why").text
    browser.execute_script(AXE)
    assert browser.execute_async_script(_AXE_RUN) == []
    screenshot(browser, "principal-needs-reconnect-1280")
    button = browser.find_element(By.CSS_SELECTOR, ".gv-connect")
    assert button.text.startswith("Reconnect")
    assert session_of(browser).get(live.base + PAGE, timeout=30).headers["Content-Security-Policy"] == policy((origin,))

    # Asked first (the stored refresh token is replaced); dismissing sends nothing.
    button.click()
    alert = wait(browser).until(EC.alert_is_present())
    assert "Reconnect alice of shop-rt?" in alert.text
    alert.dismiss()
    assert live.upstream.count("authorization_code") == 0

    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, ".gv-connect").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(page_left(old))
    # Through the upstream's authorize page and govern's callback, back to the principal's page.
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert"))).text
    assert "Principal alice of shop-rt is connected." in flash
    assert urlsplit(browser.current_url).path == "/admin/principals/details/"
    assert parse_qs(urlsplit(browser.current_url).query) == {"id": ["shop-rt/alice"]}
    assert live.upstream.count("authorization_code") == 1
    state = browser.find_element(By.ID, "gv-connection-state")
    assert state.find_element(By.CSS_SELECTOR, ".gv-state").get_attribute("data-state") == "connected"
    assert "just now" in state.text or "min ago" in state.text
    assert _connected_at(live) is not None
    with live.services.sessions() as s:  # the mark is cleared
        assert s.exec(select(Principal).where(Principal.name == "alice")).one().needs_reconnect_at is None
    assert not [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]

    stored = _stored_refresh_token(live)
    assert stored != live.refresh_token and live.upstream.refresh_token_valid(stored)
    assert stored not in browser.page_source

    # Who connected: the decision record and the admin action journal.
    connect = [r for r in live.decisions() if r.action == "connect"]
    assert [(r.outcome, r.principal, r.resource_object, r.rules) for r in connect] == [
        ("allow", "alice", "shop-rt", ["permit:connect", "by:admin-user"])]
    with live.services.sessions() as s:
        action = s.exec(select(AdminAction).where(AdminAction.action == "principal.connect")).one()
    assert (action.actor, action.subject_kind, action.subject) == ("admin-user", "principal", "shop-rt/alice")
    assert action.after["started_from"] == "console"

    # The principal gets a token now: one call to govern's token endpoint (a refresh with the new token).
    refreshes = live.upstream.count("refresh_token")
    token = live.upstream_token(live.govern_token(), "shop-user-orders")
    assert token.status_code == 200, token.text
    assert live.upstream.count("refresh_token") == refreshes + 1

    # The credential's page lists its principals with their state and the same button.
    for width in (1280, 800):
        browser.set_window_size(width, 900)
        browser.get(live.base + PAGE)
        wait(browser).until(EC.presence_of_element_located((By.ID, "gv-connection")))
        assert "Last used" in browser.find_element(By.ID, "gv-connection").text
        assert no_overflow(browser) == [] and not RAW.search(browser.page_source)
        screenshot(browser, f"principal-connected-{width}")
        browser.get(live.base + "/admin/credentials/details/?id=shop-rt")
        row = wait(browser).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, ".gv-principal-row[data-principal='shop-rt/alice']")))
        assert "connected" in row.text and row.find_elements(By.CSS_SELECTOR, ".gv-connect")
        assert no_overflow(browser) == []
        screenshot(browser, f"credential-principals-{width}")


def _no_button_and_a_forged_post_refused(browser, live, role: str, action: str) -> requests.Response:
    """Signed in as `role`: the principal's page shows no `action` button (.gv-connect, .gv-disconnect), and a
    POST made with the page's own CSRF token is refused (403). Returns the page as fetched over HTTP."""
    browser.delete_all_cookies()
    sign_in(browser, live.base, f"{role}-user")
    browser.get(live.base + PAGE)
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-connection")))
    assert browser.find_elements(By.CSS_SELECTOR, f".gv-{action}") == []
    http = session_of(browser)
    page = http.get(live.base + PAGE, timeout=30)
    forged = http.post(f"{live.base}/admin/principals/{action}/", allow_redirects=False, timeout=30,
                       data={"csrf_token": csrf_from(page.text), "principal": "shop-rt/alice"},
                       headers={"Origin": live.base})
    assert forged.status_code == 403, role
    return page


def test_operator_and_auditor_see_no_connect_button_and_their_posts_are_refused(browser, live):
    make_users(live)
    _callback_client(live)
    for role in ("operator", "auditor"):
        page = _no_button_and_a_forged_post_refused(browser, live, role, "connect")
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY  # no widening without a button
    assert live.upstream.count("authorization_code") == 0
    with live.services.sessions() as s:
        assert s.exec(select(AdminAction).where(AdminAction.action == "principal.connect")).all() == []


def _start_from_the_console(http: requests.Session, live) -> str:
    """The admin's POST, as the button sends it; returns the state the upstream was given."""
    page = http.get(live.base + PAGE, timeout=30)
    started = http.post(f"{live.base}/admin/principals/connect/", allow_redirects=False, timeout=30,
                        data={"csrf_token": csrf_from(page.text), "principal": "shop-rt/alice"},
                        headers={"Origin": live.base})
    assert started.status_code == 303
    location = started.headers["Location"]
    assert location.startswith(live.upstream.authorize_url + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["redirect_uri"] == [live.base + "/oauth/callback"] and query["code_challenge_method"] == ["S256"]
    return query["state"][0]


def test_access_denied_and_a_used_state_show_a_readable_message_on_the_console(browser, live):
    make_users(live)
    _callback_client(live)
    sign_in(browser, live.base, "admin-user")
    http = session_of(browser)
    before = _stored_refresh_token(live)

    # The upstream says access_denied: the flow (kept by govern) was started from the console.
    state = _start_from_the_console(http, live)
    # A parameter naming somewhere else is no redirect target: where the browser lands comes from the flow.
    browser.get(f"{live.base}/oauth/callback?error=access_denied&state={state}"
                "&next=https://elsewhere.example/&redirect_uri=https://elsewhere.example/")
    assert urlsplit(browser.current_url).path == "/admin/principals/details/", browser.page_source[:500]
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert"))).text
    assert "Connecting alice of shop-rt failed: the upstream did not grant access (access_denied)" in flash
    assert urlsplit(browser.current_url).path == "/admin/principals/details/"
    assert "{" not in browser.find_element(By.TAG_NAME, "body").text
    screenshot(browser, "principal-connect-denied-1280")

    # The admin starts again from the browser but never comes back from the upstream (here: the upstream
    # refuses to redirect at all); later the browser brings a state that is used (or expired): a readable
    # message on the principal's page too.
    live.upstream.register_client("shop-rt-client", secret=RT_CLIENT_SECRET, scope="orders.read",
                                  redirect_uris=["http://127.0.0.1/elsewhere"])
    browser.get(live.base + PAGE)
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, ".gv-connect").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(page_left(old))
    assert browser.current_url.startswith(live.upstream.authorize_url)
    browser.get(f"{live.base}/oauth/callback?code=forged&state={state}")
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert"))).text
    assert "did not finish: the connect request is unknown, expired or already used" in flash
    assert urlsplit(browser.current_url).path == "/admin/principals/details/"

    assert live.upstream.count("authorization_code") == 0  # no code was ever exchanged
    assert _stored_refresh_token(live) == before
    denied = [r for r in live.decisions() if r.action == "connect" and r.outcome == "deny"]
    assert [r.rules for r in denied] == [["deny:bad_request", "by:admin-user"], ["deny:bad_request"]]


def test_a_flow_started_from_the_api_still_ends_on_the_plain_page(live):
    """No console session and an API-started flow: the callback's own page, never a console redirect."""
    make_users(live)
    _callback_client(live)
    result = live.runner.invoke(["admin", "token", "admin-user", "--label", "connect-test"])
    assert result.exit_code == 0, result.output
    admin_token = result.stdout.strip().splitlines()[-1]
    started = requests.post(f"{live.base}/api/v1/credentials/shop-rt/principals/alice/connect", json={},
                            headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    assert started.status_code == 200, started.text
    page = requests.get(started.json()["authorize_url"], timeout=30)
    assert page.status_code == 200 and "Connected" in page.text
    assert page.url.startswith(live.base + "/oauth/callback")


def test_the_admin_disconnects_a_principal_and_the_console_says_who_and_why(browser, live):
    """Disconnect (asked first, naming what it affects): no upstream call for the principal from then on, its
    refresh token's revocation queued for the worker, the page says who disconnected it; operators and auditors
    see no button and their forged POSTs are refused; connecting again clears it."""
    from govern.store.revocation_queue import UpstreamRevocation

    make_users(live)
    _callback_client(live)
    for role in ("operator", "auditor"):
        _no_button_and_a_forged_post_refused(browser, live, role, "disconnect")
    with live.services.sessions() as s:
        assert s.exec(select(UpstreamRevocation)).all() == []

    browser.delete_all_cookies()
    sign_in(browser, live.base, "admin-user")
    browser.set_window_size(1280, 900)
    browser.get(live.base + PAGE)
    state = wait(browser).until(EC.presence_of_element_located((By.ID, "gv-connection-state")))
    assert state.find_element(By.CSS_SELECTOR, ".gv-state").get_attribute("data-state") == "connected"
    button = browser.find_element(By.CSS_SELECTOR, ".gv-disconnect")
    button.click()
    alert = wait(browser).until(EC.alert_is_present())
    assert "Disconnect alice of shop-rt?" in alert.text and "revokes its refresh token" in alert.text
    alert.dismiss()
    with live.services.sessions() as s:
        assert s.exec(select(Principal).where(Principal.name == "alice")).one().needs_reconnect_at is None
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, ".gv-disconnect").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(page_left(old))
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert"))).text
    assert "Principal alice of shop-rt is disconnected; 1 token revocation queued for the worker." in flash
    state = browser.find_element(By.ID, "gv-connection-state")
    assert state.find_element(By.CSS_SELECTOR, ".gv-state").get_attribute("data-state") == "needs_reconnect"
    assert "disconnected by admin-user" in state.find_element(By.CSS_SELECTOR, ".gv-why").text
    assert browser.find_elements(By.CSS_SELECTOR, ".gv-disconnect") == []  # nothing left to disconnect
    assert browser.find_element(By.CSS_SELECTOR, ".gv-connect").text.startswith("Reconnect")
    assert not RAW.search(browser.page_source) and no_overflow(browser) == []
    screenshot(browser, "principal-disconnected-1280")

    with live.services.sessions() as s:
        queued = s.exec(select(UpstreamRevocation)).all()
        action = s.exec(select(AdminAction).where(AdminAction.action == "disconnect")).one()
    assert [(q.credential, q.principal, q.token_type, q.status) for q in queued] == [
        ("shop-rt", "alice", "refresh_token", "pending")]
    assert (action.actor, action.subject) == ("admin-user", "shop-rt/alice")
    # govern makes no upstream call for a disconnected principal.
    refreshes = live.upstream.count("refresh_token")
    token = live.upstream_token(live.govern_token(), "shop-user-orders")
    assert token.status_code != 200
    assert live.upstream.count("refresh_token") == refreshes

    # Connecting again (through the upstream) clears the disconnect.
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, ".gv-connect").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(page_left(old))
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert"))).text
    assert "Principal alice of shop-rt is connected." in flash
    state = browser.find_element(By.ID, "gv-connection-state")
    assert state.find_element(By.CSS_SELECTOR, ".gv-state").get_attribute("data-state") == "connected"
    assert live.upstream_token(live.govern_token(), "shop-user-orders").status_code == 200
