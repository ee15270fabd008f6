"""A console page opened before `govern offboard` (headless Chromium): its Suspend is refused in words and
changes nothing, the reloaded page offers Reactivate, which asks first and brings the user back on purpose.
The landscape comes from `govern apply`, the offboarding from `govern offboard --commit`."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from tests.admin.browser import browser, live_server, screenshot  # noqa: F401 - fixtures
from tests.admin.test_console_browser import sign_in, wait

pytestmark = pytest.mark.browser

LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
integration_users:
  - id: order-sync
    name: Order sync
    owner: shop-team@example.com
    justification: Reads orders for the console test.
    review_date: 2099-01-01
"""


def _status(runner) -> str:
    """The user's status as `govern export` writes it (active is the default, left out)."""
    import yaml

    result = runner.invoke(["export"])
    assert result.exit_code == 0, result.output
    users = {u["id"]: u for u in yaml.safe_load(result.stdout)["integration_users"]}
    return users["order-sync"].get("status", "active")


def _confirm(driver, element) -> str:
    """Click, accept the confirmation the console asks first; its text."""
    element.click()
    alert = wait(driver).until(EC.alert_is_present())
    text = alert.text
    alert.accept()
    return text


def test_a_stale_suspend_of_an_offboarded_user_is_refused_and_reactivate_brings_it_back(
        browser, live_server, console_users, runner, tmp_path):
    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE)
    assert runner.invoke(["apply", "-f", str(path)]).exit_code == 0
    sign_in(browser, live_server, console_users["admin"])
    browser.get(f"{live_server}/admin/integration_users/details/?id=order-sync")
    suspend = wait(browser).until(EC.element_to_be_clickable((By.ID, "gv-suspend")))

    offboarded = runner.invoke(["offboard", "order-sync", "--commit"])  # meanwhile, from a terminal
    assert offboarded.exit_code == 0, offboarded.output
    assert _status(runner) == "retired"

    _confirm(browser, suspend)  # the page still shows the user as active
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert-danger, .alert-error")))
    assert "order-sync is retired (offboarded)" in flash.text and "Reactivate it" in flash.text, flash.text
    assert "--reactivate" not in browser.page_source  # the CLI's wording has no place here
    screenshot(browser, "retired-user-suspend-refused")
    assert _status(runner) == "retired"

    asked = _confirm(browser, wait(browser).until(EC.element_to_be_clickable((By.ID, "gv-reactivate"))))
    assert asked.startswith("Reactivate order-sync? It was offboarded"), asked
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".alert-success"), "order-sync reactivated."))
    assert _status(runner) == "active"
