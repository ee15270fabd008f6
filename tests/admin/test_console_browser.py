"""End-to-end: a real headless Chromium drives the console (Selenium) against a fresh database.

The app runs in a thread (werkzeug make_server on a free port); every wait polls with a deadline.
Screenshots land in artifacts/screenshots/ (see the README).
"""
from __future__ import annotations

import re

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlmodel import select

from govern.store.db import session_scope
from govern.store.tables import AdminAction, Assignment, IntegrationUser, RotationRun, SecretRef
from tests.admin.browser import browser, page_left, live_server, screenshot  # noqa: F401 - fixtures
from tests.admin.conftest import PASSWORD
from tests.admin.seed import seed_decisions, seed_findings_and_rotations
from tests.factories import make_landscape

pytestmark = pytest.mark.browser


def wait(driver, seconds: float = 20):
    return WebDriverWait(driver, seconds)


def sign_in(driver, base: str, username: str, password: str = PASSWORD) -> None:
    driver.get(f"{base}/admin/login")
    wait(driver).until(EC.presence_of_element_located((By.ID, "username"))).send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver, driver.find_element(By.ID, "gv-signin"))
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "gv-whoami"), username))


def submit(driver, element) -> None:
    """Click something that loads a new page, and wait until the old page is gone (no stale reads)."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait(driver).until(page_left(old))


def flash_text(driver) -> str:
    return wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert"))).text


@pytest.fixture
def world(services):
    make_landscape(services, daily_api_budget=40)
    make_landscape(services, system="warehouse", credential="wh-cc", named_credential="wh-api",
                   user="wh-load", permission_set="wh-load-ps", client_id="wh")
    now = services.clock.now()
    seed_decisions(services, now)
    seed_decisions(services, now, named_credential="wh-api", count=40)
    seed_findings_and_rotations(services, now)
    with session_scope(services.sessions) as s:
        ref = s.exec(select(SecretRef).where(SecretRef.owner_kind == "credential")).one()  # the seeded one
        ref.rotator = "static"
        return {"ref_id": ref.id}


def test_admin_manages_an_integration_user_end_to_end(browser, live_server, console_users, services, world):
    sign_in(browser, live_server, console_users["admin"])
    screenshot(browser, "dashboard")

    # Create an integration user.
    browser.get(f"{live_server}/admin/integration_users/")
    submit(browser, wait(browser).until(EC.element_to_be_clickable((By.ID, "gv-new-user"))))
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-user-form")))
    for field, value in {"id": "invoice-push", "name": "Invoice push", "owner": "finance@example.com",
                         "justification": "Pushes approved invoices to the ERP.", "ip_ranges": "10.20.0.0/16",
                         "scopes": "orders.read"}.items():
        browser.find_element(By.ID, field).send_keys(value)
    Select(browser.find_element(By.ID, "source_system")).select_by_value("erp")
    submit(browser, browser.find_element(By.ID, "gv-save-user"))
    assert "invoice-push created" in flash_text(browser)

    # Set its client secret (write-only: afterwards only "set on DATE").
    canary = "canary-browser-7Kq2-secret-value"
    browser.find_element(By.ID, "gv-secret-value").send_keys(canary)
    submit(browser, browser.find_element(By.ID, "gv-set-secret"))
    assert "Client secret of invoice-push set" in flash_text(browser)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "gv-user-details"), "only a hash is kept"))
    assert canary not in browser.page_source

    # Assign a permission set.
    Select(browser.find_element(By.ID, "gv-assign-set")).select_by_value("order-sync-ps")
    submit(browser, browser.find_element(By.ID, "gv-assign"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "gv-assignments"), "order-sync-ps"))
    screenshot(browser, "integration-user")

    # Suspending asks first; dismissing it changes nothing, accepting it suspends.
    browser.find_element(By.ID, "gv-suspend").click()
    wait(browser).until(EC.alert_is_present()).dismiss()
    with services.sessions() as s:
        assert s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "invoice-push")).one().status \
            == "active"
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "gv-suspend").click()
    alert = wait(browser).until(EC.alert_is_present())
    assert "Suspend invoice-push?" in alert.text
    alert.accept()
    wait(browser).until(page_left(old))
    with services.sessions() as s:
        assert s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "invoice-push")).one().status \
            == "suspended"

    with services.sessions() as s:
        user = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "invoice-push")).one()
        assert user.client_secret_hash and canary not in user.client_secret_hash
        assert s.exec(select(Assignment).where(Assignment.integration_user_id == user.id)).one()

    # Start a rotation.
    browser.get(f"{live_server}/admin/secrets/")
    old = browser.find_element(By.TAG_NAME, "html")
    wait(browser).until(EC.element_to_be_clickable((By.ID, f"gv-rotate-{world['ref_id']}"))).click()
    wait(browser).until(EC.alert_is_present()).accept()  # the "are you sure" confirmation
    wait(browser).until(page_left(old))
    assert "started (run" in flash_text(browser)
    with services.sessions() as s:
        runs = s.exec(select(RotationRun).where(RotationRun.secret_ref_id == world["ref_id"],
                                                RotationRun.state != "parked")).all()
        actions = {a.action for a in s.exec(select(AdminAction).where(AdminAction.actor == "admin-user"))}
    assert len(runs) == 1
    assert {"integration_user.create", "secret.put", "assignment.add", "rotation.start"} <= actions


def test_an_auditor_can_change_nothing(browser, live_server, console_users, services, world):
    sign_in(browser, live_server, console_users["auditor"])
    with services.sessions() as s:
        user_id = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one().id
    browser.get(f"{live_server}/admin/integration_users/details/?id={user_id}")
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-assignments")))
    for element_id in ("gv-suspend", "gv-assign", "gv-set-secret", "gv-edit-user", "gv-user-actions"):
        assert browser.find_elements(By.ID, element_id) == [], element_id
    browser.get(f"{live_server}/admin/integration_users/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table")))
    assert browser.find_elements(By.ID, "gv-new-user") == []
    browser.get(f"{live_server}/admin/secrets/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table")))
    assert browser.find_elements(By.ID, f"gv-rotate-{world['ref_id']}") == []

    # A POST made by hand with the auditor's own session and a valid CSRF token is refused by the server.
    http = requests.Session()
    for cookie in browser.get_cookies():
        http.cookies.set(cookie["name"], cookie["value"])
    page = http.get(f"{live_server}/admin/integration_users/", timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    for url, data in [("/admin/integration_users/status/", {"user": "order-sync", "status": "suspended"}),
                      ("/admin/integration_users/assign/", {"user": "order-sync", "permission_set": "wh-load-ps"}),
                      ("/admin/secrets/rotate/", {"ref": world["ref_id"]})]:
        response = http.post(f"{live_server}{url}", data={"csrf_token": token, **data},
                             headers={"Origin": live_server}, allow_redirects=False, timeout=10)
        assert response.status_code == 403, url
    with services.sessions() as s:
        assert s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one().status == "active"
        assert s.exec(select(RotationRun).where(RotationRun.state != "parked")).all() == []
