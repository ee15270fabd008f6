"""An integration user's page in headless Chromium at 1280 and 800 px, against govern as `govern serve` wires it
(landscape from `govern apply`, decisions from real calls through the app):

- its decisions of the window, allowed and denied by rule, each count linked to the decision list filtered to
  that user and rule (the list shows as many records as the count);
- "granted vs used" from the audit's right-sizing, with the replay-proven recommendation;
- the button that applies it: an operator and an auditor see none and their forged POSTs are refused; the
  admin is asked first (dismissing changes nothing), and accepting applies it through `apply_document` and
  records `rightsizing.apply`. Afterwards the call the user made still goes through and a grant it never used
  is refused, through the app.
"""
from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from sqlmodel import select

from govern.store.db import session_scope
from govern.store.tables import AdminAction, Assignment, IntegrationUser, PermissionSet
from tests.admin.browser import browser, page_left, screenshot  # noqa: F401 - fixtures
from tests.admin.test_console_audit_pages import RAW, make_users, no_overflow, session_of, set_shop_owner
from tests.admin.test_console_browser import sign_in, wait
from tests.e2e.conftest import live, resources  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.db, pytest.mark.slow]

USER_PAGE = "/admin/integration_users/details/?id=order-sync"


def age_the_instance(live) -> None:
    """order-sync was created 60 days ago and the decision log began 45 days ago: the 30-day window judges it
    (a younger user or a younger log proves nothing by absence of use)."""
    now = dt.datetime.now(dt.UTC)
    with session_scope(live.services.sessions) as s:
        s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one().created_at = \
            now - dt.timedelta(days=60)
    live.services.landscape.invalidate()
    live.services.decision_log.append(None, None, at=now - dt.timedelta(days=45), correlation_id="log-began",
                                      allowed=False, rules=["deny:default"])


def assignments(live) -> set[str]:
    with live.services.sessions() as s:
        user = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one()
        return {ps.external_id for ps in s.exec(select(PermissionSet).join(
            Assignment, Assignment.permission_set_id == PermissionSet.id).where(Assignment.integration_user_id == user.id))}


def listed(http: requests.Session, url: str) -> int:
    page = http.get(url, timeout=30)
    assert page.status_code == 200, url
    count = re.search(r"List \((\d+)\)", page.text)
    return int(count.group(1)) if count else 0


def test_decisions_by_rule_granted_vs_used_and_the_confirmed_audited_apply(browser, live):
    make_users(live)
    age_the_instance(live)
    token = live.govern_token(scope="orders.read items.read")
    assert live.upstream_token(token, "shop-orders").status_code == 200  # allowed by shop-reader
    for item in (1, 2):
        assert live.proxy(token, "stock-api", f"v1/items/{item}").status_code == 200  # allowed by stock-reader
    assert live.proxy(token, "stock-api", "v1/orders/1").status_code == 403  # no grant covers this path
    assert live.services.decision_log.flush()
    before = assignments(live)
    assert before == {"shop-reader", "stock-reader"}

    # Operator and auditor: the page shows the recommendation, no button, and a forged POST is refused.
    for role in ("operator", "auditor"):
        browser.delete_all_cookies()
        sign_in(browser, live.base, f"{role}-user")
        browser.get(live.base + USER_PAGE)
        wait(browser).until(EC.presence_of_element_located((By.ID, "gv-recommendation")))
        assert browser.find_elements(By.ID, "gv-rightsize") == []
        http = session_of(browser)
        token_field = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', browser.page_source).group(1)
        forged = http.post(f"{live.base}/admin/integration_users/rightsize/", allow_redirects=False, timeout=30,
                           data={"csrf_token": token_field, "user": "order-sync"}, headers={"Origin": live.base})
        assert forged.status_code == 403, role
    assert assignments(live) == before

    browser.delete_all_cookies()
    sign_in(browser, live.base, "admin-user")
    http = session_of(browser)
    for width in (1280, 800):
        browser.set_window_size(width, 900)
        browser.get(live.base + USER_PAGE)
        wait(browser).until(EC.presence_of_element_located((By.ID, "gv-by-rule")))
        rows = {r.get_attribute("data-rule"): r for r in browser.find_elements(By.CSS_SELECTOR, ".gv-rule-row")}
        counts = {rule: (int(r.find_element(By.CSS_SELECTOR, ".gv-n-allowed").text),
                         int(r.find_element(By.CSS_SELECTOR, ".gv-n-denied").text)) for rule, r in rows.items()}
        assert counts["permit:shop-reader"] == (1, 0) and counts["permit:stock-reader"] == (2, 0), counts
        assert sum(denied for _, denied in counts.values()) == 1, counts
        # Every count opens the decisions behind it.
        for rule, r in rows.items():
            for kind, number in zip(("allowed", "denied"), counts[rule]):
                link = r.find_element(By.CSS_SELECTOR, f".gv-n-{kind}").get_attribute("href")
                assert listed(http, link) == number, (rule, kind)

        granted = browser.find_element(By.ID, "gv-granted").text
        used = browser.find_element(By.ID, "gv-used").text
        assert "stock-legacy" in granted and "shop-user-orders" in granted
        assert "stock-api: GET /v1/items/1" in used and "stock-legacy" not in used
        unused = browser.find_element(By.ID, "gv-unused").text
        assert "stock-legacy" in unused and "never called" in unused
        recommendation = browser.find_element(By.ID, "gv-recommendation").text
        assert "stock-reader-rightsized" in recommendation and "stock-legacy" not in recommendation
        assert "none would be denied" in browser.find_element(By.ID, "gv-proof").text
        assert no_overflow(browser) == []
        assert not RAW.search(browser.page_source)
        screenshot(browser, f"integration-user-rightsizing-{width}")

    # Asked first, naming what changes; dismissing changes nothing.
    browser.find_element(By.ID, "gv-rightsize").click()
    alert = wait(browser).until(EC.alert_is_present())
    assert "Apply the right-sizing to order-sync?" in alert.text and "stock-reader-rightsized" in alert.text
    alert.dismiss()
    assert assignments(live) == before
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "gv-rightsize").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(page_left(old))
    assert "Right-sizing of order-sync applied" in browser.find_element(By.CSS_SELECTOR, ".alert").text

    after = assignments(live)
    assert after and all(name.endswith("-rightsized") for name in after), after
    assert "stock-reader-rightsized" in browser.find_element(By.ID, "gv-assignments").text
    with live.services.sessions() as s:
        action = s.exec(select(AdminAction).where(AdminAction.action == "rightsizing.apply")).one()
    assert action.actor == "admin-user" and action.subject == "order-sync"
    assert action.after["would_deny"] == 0 and action.after["replayed_requests"] >= 3

    # Through the app: what the user used still works; a grant it never used is refused.
    live.services.landscape.invalidate()
    token = live.govern_token(scope="orders.read items.read")
    assert live.proxy(token, "stock-api", "v1/items/3").status_code == 200
    assert live.proxy(token, "stock-legacy", "v1/items/3").status_code == 403
    browser.get(live.base + USER_PAGE)
    assert wait(browser).until(EC.presence_of_element_located((By.ID, "gv-rightsizing")))


def test_the_audit_model_is_built_once_per_landscape_version_and_decision_log_position(live, tmp_path):
    """A page view reads the landscape version and the decision log's position; it rebuilds the audit model
    (which reads every decision of the window) only when one of them moved. Counted, not timed."""
    from tests.admin.conftest import PASSWORD, csrf_from

    make_users(live)
    age_the_instance(live)
    token = live.govern_token(scope="orders.read items.read")
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    assert live.services.decision_log.flush()
    http = requests.Session()
    page = http.get(f"{live.base}/admin/login", timeout=30)
    http.post(f"{live.base}/admin/login", timeout=30, headers={"Origin": live.base},
              data={"username": "auditor-user", "password": PASSWORD,
                    "csrf_token": csrf_from(page.text)})

    def view() -> str:
        page = http.get(live.base + USER_PAGE, timeout=30)
        assert page.status_code == 200 and 'id="gv-recommendation"' in page.text
        return page.text

    cache = _user_view(live).rightsizing_models
    first = view()
    assert cache.builds == 1
    second = view()
    assert cache.builds == 1, "the second view rebuilt the audit model"
    assert _recommendation(first) == _recommendation(second)

    # A new decision moves the log: the next view rebuilds, and shows what changed.
    assert live.proxy(token, "stock-api", "v1/items/2").status_code == 200
    assert live.services.decision_log.flush()
    view()
    assert cache.builds == 2
    view()
    assert cache.builds == 2

    # A landscape change (`govern apply`) moves the version: rebuilt.
    set_shop_owner(live, tmp_path, "shop-team@example.com")
    view()
    assert cache.builds == 3


def _user_view(live):
    app = live.extra["app"]  # the app start_live serves
    return next(v for v in app.extensions["govern_admin"]._views if v.endpoint == "console_integration_users")


def _recommendation(html: str) -> str:
    match = re.search(r'id="gv-recommendation".*?</div>', html, re.S)
    assert match
    return match.group(0)
