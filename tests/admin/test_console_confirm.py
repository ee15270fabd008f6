"""Every destructive console action asks first, names what it affects, and changes nothing when dismissed
(headless Chromium; the confirmation is console.js reading data-confirm, since the CSP forbids inline script)."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select
from sqlmodel import select

from govern.store.tables import Assignment, IntegrationUser, RotationRun, SecretRef
from tests.admin.browser import browser, live_server, screenshot  # noqa: F401 - fixtures
from tests.admin.test_console_browser import sign_in, wait, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def state(services) -> dict:
    """Everything a destructive action could change."""
    with services.sessions() as s:
        user = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one()
        return {"status": user.status, "secret_hash": user.client_secret_hash,
                "assignments": len(s.exec(select(Assignment).where(Assignment.integration_user_id == user.id)).all()),
                "runs": sorted((r.id, r.state, r.attempts, len(r.steps or [])) for r in s.exec(select(RotationRun))),
                "refs": sorted((r.external_id, r.current_version) for r in s.exec(select(SecretRef)))}


def ask_and_dismiss(driver, element) -> str:
    """Click, read the confirmation, dismiss it; the page must stay (nothing was sent)."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    alert = wait(driver).until(EC.alert_is_present())
    text = alert.text
    alert.dismiss()
    assert page.is_displayed()  # still the same document: no navigation, no POST
    return text


def test_destructive_actions_ask_name_their_subject_and_dismissing_changes_nothing(
        browser, live_server, console_users, services, world):
    sign_in(browser, live_server, console_users["admin"])
    before = state(services)
    with services.sessions() as s:
        user_id = s.exec(select(IntegrationUser).where(IntegrationUser.external_id == "order-sync")).one().id
        run_id = s.exec(select(RotationRun)).one().id
    ref = "credential/erp-cc/principal/default/client_secret"
    asked = {}

    browser.get(f"{live_server}/admin/integration_users/details/?id={user_id}")
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-assignments")))
    # Nothing is granted by default: the permission-set drop-down starts on its empty prompt.
    assert Select(browser.find_element(By.ID, "gv-assign-set")).first_selected_option.get_attribute("value") == ""
    asked["suspend"] = ask_and_dismiss(browser, browser.find_element(By.ID, "gv-suspend"))
    asked["unassign"] = ask_and_dismiss(browser, browser.find_element(By.CSS_SELECTOR, ".gv-unassign"))
    browser.find_element(By.ID, "gv-secret-value").send_keys("a replacement that must not be stored")
    asked["replace secret"] = ask_and_dismiss(browser, browser.find_element(By.ID, "gv-set-secret"))
    screenshot(browser, "confirm-integration-user")

    browser.get(f"{live_server}/admin/credentials/details/?id=1")
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-credential-secret-form")))
    browser.find_element(By.ID, "gv-credential-secret-value").send_keys("another value that must not be stored")
    asked["credential secret"] = ask_and_dismiss(browser, browser.find_element(By.ID, "gv-credential-set-secret"))

    browser.get(f"{live_server}/admin/secrets/")
    ref_id = world["ref_id"]
    asked["rotate"] = ask_and_dismiss(
        browser, wait(browser).until(EC.element_to_be_clickable((By.ID, f"gv-rotate-{ref_id}"))))

    browser.get(f"{live_server}/admin/rotations/")
    asked["retry"] = ask_and_dismiss(
        browser, wait(browser).until(EC.element_to_be_clickable((By.ID, f"gv-retry-{run_id}"))))
    asked["acknowledge"] = ask_and_dismiss(browser, browser.find_element(By.ID, f"gv-ack-{run_id}"))

    assert "Suspend order-sync?" in asked["suspend"]
    assert "order-sync-ps" in asked["unassign"] and "order-sync" in asked["unassign"]
    assert "client secret of order-sync" in asked["replace secret"]
    assert "erp-cc" in asked["credential secret"]
    assert ref in asked["rotate"]
    assert f"run {run_id} of {ref}" in asked["retry"] and f"run {run_id} of {ref}" in asked["acknowledge"]
    assert state(services) == before
