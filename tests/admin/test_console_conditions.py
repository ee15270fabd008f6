"""A permission set's access conditions in the console, in headless Chromium at 1280 and 800 px, against govern
as `govern serve` wires it: the conditions come from `govern apply`, the denial from real calls.

The permission set's page shows its time windows (days, hours, time zone), its requests per minute and its
source ranges as fields; the decision list says in words which condition denied a call. No raw JSON and no
stored key names appear.
"""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from tests.admin.browser import browser, screenshot  # noqa: F401 - fixtures
from tests.admin.test_console_audit_pages import RAW, make_users, no_overflow
from tests.admin.test_console_browser import sign_in, wait
from tests.admin.test_console_pages import _AXE_RUN, AXE
from tests.e2e.conftest import live, resources  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.db, pytest.mark.slow]

CONDITIONED = """\
apiVersion: govern/v1
kind: Landscape
permission_sets:
  - id: stock-reader
    scopes: [items.read]
    api_types: [REST]
    grants:
      - {named_credential: stock-api, principal: default, methods: [GET], paths: ["/v1/items/**"]}
      - {named_credential: stock-legacy, principal: svc, methods: [GET], paths: ["/v1/items/**"]}
    conditions:
      time_windows:
        - {days: weekdays, start: "08:00", end: "18:00", time_zone: Europe/Paris}
        - {days: [sat, sun], start: "00:00", end: "24:00", time_zone: UTC}
        - {days: [mon, tue, wed, thu, fri], start: "18:00", end: "08:00", time_zone: Europe/Paris}
        - {days: [mon], start: "00:00", end: "08:00", time_zone: Europe/Paris}
      max_requests_per_minute: 1
      source_cidrs: [127.0.0.0/24]
"""
# The windows cover the whole week, whatever the hour the test runs at (Monday 00:00-08:00 in Paris is the fourth's:
# without it, a run early on a Monday met "outside its time window" instead of the rate).
# What a person reads, and what must not be there: the stored JSON's keys.
STORED_KEYS = ("time_windows", "max_requests_per_minute", "source_cidrs", "time_zone", '"days"')


def test_conditions_read_as_fields_and_a_denial_names_its_condition_in_words(browser, live, tmp_path):
    make_users(live)
    path = tmp_path / "conditions.yaml"
    path.write_text(CONDITIONED)
    result = live.runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    live.services.landscape.invalidate()
    token = live.govern_token(scope="items.read")
    # One request a minute: of three in a row at least two fall in the same minute, so one is denied.
    answers = [live.proxy(token, "stock-api", f"v1/items/{n}").status_code for n in (1, 2, 3)]
    assert answers.count(403) >= 1 and set(answers) <= {200, 403}, answers
    assert live.services.decision_log.flush()

    sign_in(browser, live.base, "auditor-user")
    for width in (1280, 800):
        browser.set_window_size(width, 900)
        browser.get(live.base + "/admin/permission_sets/details/?id=stock-reader")
        card = wait(browser).until(EC.presence_of_element_located((By.ID, "gv-conditions")))
        windows = [w.text for w in card.find_elements(By.CSS_SELECTOR, ".gv-window")]
        assert windows == ["Monday to Friday, 08:00 to 18:00 (Europe/Paris)", "Saturday, Sunday, all day (UTC)",
                           "Monday to Friday, 18:00 to 08:00 (into the next day) (Europe/Paris)",
                           "Monday, 00:00 to 08:00 (Europe/Paris)"], windows
        assert browser.find_element(By.ID, "gv-condition-rate").text == "at most 1 per user"
        assert browser.find_element(By.ID, "gv-condition-sources").text == "127.0.0.0/24"
        text = browser.find_element(By.TAG_NAME, "body").text
        assert not [key for key in STORED_KEYS if key in text] and not RAW.search(browser.page_source)
        assert no_overflow(browser) == []
        if width == 1280:
            browser.execute_script(AXE)
            assert browser.execute_async_script(_AXE_RUN) == []
        screenshot(browser, f"permission-set-conditions-{width}")

        browser.get(live.base + "/admin/decisions/")
        wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table")))
        reasons = browser.find_elements(By.CSS_SELECTOR, ".gv-rule-text")
        assert reasons and {r.text for r in reasons} == {"over its requests per minute"}
        assert {r.get_attribute("title") for r in reasons} == {"condition:max_requests_per_minute"}
        assert not [key for key in STORED_KEYS if key in browser.find_element(By.TAG_NAME, "body").text]
        assert no_overflow(browser) == []
        if width == 1280:
            browser.execute_script(AXE)
            assert browser.execute_async_script(_AXE_RUN) == []
        screenshot(browser, f"decisions-condition-denied-{width}")
