"""The policies page and the global search in headless Chromium at 1280 and 800 px, against govern as
`govern serve` wires it (landscape from `govern apply`, decisions from real calls through the app).

govern decides with its packaged guardrails plus one more (`no-item-nine`, forbidding one path), so a real call
is denied by a named policy. The policies page then shows each policy's id, its Cedar text highlighted on the
server, its validation state (a policy file broken after start-up shows as invalid, with the validator's
message), and how many decisions it decided in the window, linked to the list of exactly those decisions.

The search box in the navigation finds entities by external id or by name and links to their pages by name.
"""
from __future__ import annotations

import re
import shutil

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from sqlmodel import select

from govern.policy.guardrails import PACKAGED_POLICIES
from govern.store.tables import Decision
from tests.admin.browser import browser, page_left, screenshot, screenshot_top  # noqa: F401 - fixtures
from tests.admin.test_console_audit_pages import RAW, make_users, no_overflow, session_of
from tests.admin.test_console_browser import sign_in, submit, wait
from tests.e2e.conftest import resources, start_live, stop_live  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.db, pytest.mark.slow]

NO_ITEM_NINE = '''// Item 9 is withdrawn: nobody reads it.
@id("no-item-nine")
forbid (principal, action, resource)
when { context.path like "/v1/items/9" };
'''


@pytest.fixture
def guarded(tmp_path, settings, runner, fake_upstream, resources, monkeypatch):
    folder = tmp_path / "policies"
    shutil.copytree(PACKAGED_POLICIES, folder)
    (folder / "050_no_item_nine.cedar").write_text(NO_ITEM_NINE)
    started = start_live(tmp_path, settings, runner, fake_upstream, resources, monkeypatch, policies_dir=folder)
    started.extra["policies"] = folder
    yield started
    stop_live(started)


def listed(http: requests.Session, url: str) -> int:
    page = http.get(url, timeout=30)
    assert page.status_code == 200, url
    count = re.search(r"List \((\d+)\)", page.text)
    return int(count.group(1)) if count else 0


def test_policies_show_id_text_validation_and_the_decisions_they_decided(browser, guarded):
    live = guarded
    make_users(live)
    token = live.govern_token(scope="orders.read items.read")
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    for _ in range(2):
        answer = live.proxy(token, "stock-api", "v1/items/9")
        assert answer.status_code == 403 and "no-item-nine" in answer.text
    assert live.upstream_token(token, "shop-orders").status_code == 200
    assert live.services.decision_log.flush()
    with live.services.sessions() as s:
        permitted = len(s.exec(select(Decision).where(Decision.allowed.is_(True),
                                                      Decision.action.not_in(("oauth_token", "connect")))).all())
    assert permitted == 2
    # After start-up someone breaks a policy file: the page says so (the running decider keeps its policies).
    (live.extra["policies"] / "060_broken.cedar").write_text(
        '@id("broken-policy")\nforbid (principal, action, resource) when { context.no_such_attribute };\n')

    sign_in(browser, live.base, "auditor-user")
    http = session_of(browser)
    for width in (1280, 800):
        browser.set_window_size(width, 900)
        browser.get(f"{live.base}/admin/policies/")
        wait(browser).until(EC.presence_of_element_located((By.ID, "gv-policy-list")))
        shown = {p.get_attribute("data-policy"): p for p in browser.find_elements(By.CSS_SELECTOR, ".gv-policy")}
        assert {"permission-sets", "no-admin-equivalent-grants", "require-ip-restrictions",
                "no-full-or-wildcard-scopes", "cap-token-lifetime", "condition:time_window",
                "condition:max_requests_per_minute", "condition:source_cidrs", "no-item-nine", "broken-policy"} == set(shown)
        nine = shown["no-item-nine"]
        # The Cedar text, highlighted by token kind, with its comment.
        assert nine.find_element(By.CSS_SELECTOR, ".gv-cedar-keyword").text == "forbid"
        assert nine.find_element(By.CSS_SELECTOR, ".gv-cedar-annotation").text == "@id"
        assert '"/v1/items/9"' in [e.text for e in nine.find_elements(By.CSS_SELECTOR, ".gv-cedar-string")]
        assert "Item 9 is withdrawn" in nine.find_element(By.CSS_SELECTOR, ".gv-cedar-comment").text
        states = {pid: p.find_element(By.CSS_SELECTOR, ".gv-policy-state").text for pid, p in shown.items()}
        assert states.pop("broken-policy") == "invalid" and set(states.values()) == {"valid"}, states
        assert "no_such_attribute" in shown["broken-policy"].text
        # What each decided in the window, linked to exactly those decisions.
        counts = {pid: (int(p.find_element(By.CSS_SELECTOR, ".gv-policy-count").text),
                        p.find_element(By.CSS_SELECTOR, ".gv-policy-count").get_attribute("href"))
                  for pid, p in shown.items() if p.find_elements(By.CSS_SELECTOR, ".gv-policy-count")}
        assert counts["no-item-nine"][0] == 2 and counts["permission-sets"][0] == permitted
        assert counts["cap-token-lifetime"][0] == 0
        for pid, (number, link) in counts.items():
            assert listed(http, link) == number, pid
        assert no_overflow(browser) == []
        assert not RAW.search(browser.page_source)
        screenshot(browser, f"policies-{width}")
        screenshot_top(browser, f"policies-top-{width}")


def test_the_search_box_finds_entities_by_id_or_name_and_links_to_them(browser, guarded):
    live = guarded
    make_users(live)
    sign_in(browser, live.base, "operator-user")
    browser.set_window_size(1280, 900)

    def search(text: str) -> dict[str, list[tuple[str, str]]]:
        box = browser.find_element(By.ID, "gv-search-q")
        box.clear()
        box.send_keys(text)
        old = browser.find_element(By.TAG_NAME, "html")
        box.send_keys(Keys.ENTER)
        wait(browser).until(page_left(old))
        return {g.get_attribute("data-kind"): [(a.text, a.get_attribute("href")) for a in
                                               g.find_elements(By.CSS_SELECTOR, ".gv-search-hit a")]
                for g in browser.find_elements(By.CSS_SELECTOR, ".gv-search-group")}

    browser.get(f"{live.base}/admin/")
    found = search("Order sync")  # a name
    assert [name for name, _ in found["Integration user"]] == ["order-sync"]
    found = search("stock")  # ids and names across kinds
    assert {"System", "Named credential", "Credential", "Permission set"} <= set(found)
    assert ("stock-api", f"{live.base}/admin/named_credentials/details/?id=stock-api") in found["Named credential"]
    assert not RAW.search(browser.page_source)
    screenshot(browser, "search-1280")
    # Each hit opens the entity's page, named in the URL.
    submit(browser, browser.find_element(By.LINK_TEXT, "stock-reader"))
    assert browser.current_url.endswith("/admin/permission_sets/details/?id=stock-reader")
    assert "stock-reader" in browser.find_element(By.TAG_NAME, "body").text
    # Nothing found says so; a hostile query is plain text.
    found = search('<script>"%_')
    assert found == {} and browser.find_element(By.ID, "gv-search-none").text == "Nothing matches."
    browser.set_window_size(800, 900)
    browser.get(f"{live.base}/admin/search/?q=shop")
    wait(browser).until(EC.presence_of_element_located((By.ID, "gv-search-summary")))
    assert no_overflow(browser) == []
    screenshot(browser, "search-800")
    # At 800 px the menu is collapsed behind its toggle; the search box is not: typed in without opening the
    # menu, it reaches an entity.
    browser.get(f"{live.base}/admin/")
    assert not browser.find_element(By.ID, "admin-navbar-collapse").is_displayed()
    assert browser.find_element(By.ID, "gv-search-q").is_displayed()
    found = search("order-sync")
    submit(browser, browser.find_element(By.LINK_TEXT, "order-sync"))
    assert browser.current_url.endswith("/admin/integration_users/details/?id=order-sync")
    assert found["Integration user"]
    screenshot_top(browser, "search-box-800")
