"""Every console page, as an admin, in headless Chromium with every host but govern's refused:

- it carries the console's Content-Security-Policy, renders completely, and the browser logs no CSP
  violation and no failed request (nothing comes from outside);
- axe-core (tests/admin/data/axe.min.js, MPL-2.0) finds no serious or critical violation at 1280 px;
- no table is wider than its container at 1280 px and at 800 px;
- a full-page screenshot of each page at both widths lands in artifacts/screenshots/.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from govern.admin.lockdown import CONTENT_SECURITY_POLICY
from tests.admin.browser import browser, live_server, screenshot  # noqa: F401 - fixtures
from tests.admin.test_console_browser import sign_in, wait, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

AXE = (Path(__file__).parent / "data" / "axe.min.js").read_text(encoding="utf-8")
WIDTHS = (1280, 800)

_RESOURCES = """
return performance.getEntriesByType('resource').map(e => [e.name, e.responseStatus || 0]);
"""
_SHEETS = """
return Array.from(document.querySelectorAll('link[rel=stylesheet]')).map(l => {
  let rules = -1; try { rules = l.sheet ? l.sheet.cssRules.length : -1; } catch (e) { rules = -2; }
  return [l.href, rules];
});
"""
_OVERFLOW = """
const out = [];
document.querySelectorAll('table').forEach((t, i) => {
  const box = t.parentElement;
  if (t.scrollWidth > box.clientWidth + 1 || box.scrollWidth > box.clientWidth + 1)
    out.push([t.id || (t.closest('[id]') || {}).id || t.className, Math.max(t.scrollWidth, box.scrollWidth), box.clientWidth]);
});
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) out.push(['page', doc.scrollWidth, doc.clientWidth]);
return out;
"""
_AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations
  .filter(v => v.impact === 'serious' || v.impact === 'critical')
  .map(v => [v.id, v.impact, v.nodes.length, v.nodes.slice(0, 3).map(n => n.target.join(' ') + (
    v.id === 'color-contrast' && n.any[0] ? ` ${n.any[0].data.fgColor} on ${n.any[0].data.bgColor}` : ''))])));
"""


def console_pages(driver, base: str) -> list[tuple[str, str]]:
    """(name, path) for the dashboard, two lists its figures link to, every page in the menu, and the first
    record's page of every list."""
    driver.get(f"{base}/admin/")
    wait(driver).until(EC.presence_of_element_located((By.ID, "gv-whoami")))
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "nav a[href]")]
    menu = sorted({urlsplit(h).path for h in links if h and urlsplit(h).path.startswith("/admin/")
                   and urlsplit(h).netloc == urlsplit(base).netloc})
    pages = [("dashboard", "/admin/")]
    # Lists opened from the dashboard's figures carry active filters, which render their own form fields.
    for css, name in ((".gv-n-denied", "filtered-decisions"), (".gv-n-failed-rotations", "filtered-rotations")):
        target = urlsplit(driver.find_elements(By.CSS_SELECTOR, css)[0].get_attribute("href"))
        pages.append((name, f"{target.path}?{target.query}"))
    for path in menu:
        if path == "/admin/":
            continue
        pages.append((path.strip("/").replace("/", "-"), path))
        driver.get(f"{base}{path}")
        details = driver.find_elements(By.CSS_SELECTOR, "a[href*='/details/']")
        if details:
            target = urlsplit(details[0].get_attribute("href"))
            pages.append((path.strip("/").replace("/", "-") + "-details", f"{target.path}?{target.query}"))
    pages.append(("integration-user-form", "/admin/integration_users/save/"))
    return pages


def page_problems(driver, base: str) -> list[str]:
    """What the browser saw go wrong while loading the current page: log lines, outside or failed requests."""
    problems = []
    for entry in driver.get_log("browser"):
        if entry["level"] in ("SEVERE", "WARNING") or "Content Security Policy" in entry["message"]:
            problems.append(f"console: {entry['message']}")
    origin = urlsplit(base).netloc
    for url, status in driver.execute_script(_RESOURCES):
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != origin:
            problems.append(f"outside request: {url}")
        elif status >= 400:
            problems.append(f"failed request: {url} ({status})")
    for href, rules in driver.execute_script(_SHEETS):
        if rules <= 0:
            problems.append(f"stylesheet not applied: {href} ({rules})")
    if driver.execute_script("return document.readyState") != "complete":
        problems.append("page did not finish loading")
    return problems


def load(driver, base: str, path: str) -> None:
    driver.get(f"{base}{path}")
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_every_page_is_self_contained_accessible_and_fits(browser, live_server, console_users, world):
    sign_in(browser, live_server, console_users["admin"])
    pages = console_pages(browser, live_server)
    assert len(pages) >= 30, pages  # the menu, record pages and the form: the tour must not silently shrink

    # Every console response carries the policy (the page and what it loads), signed in as the admin.
    http = requests.Session()
    for cookie in browser.get_cookies():
        http.cookies.set(cookie["name"], cookie["value"])
    for _, path in pages + [("theme", "/admin/theme/bootstrap.min.css"), ("login", "/admin/login")]:
        response = http.get(f"{live_server}{path}", timeout=30)
        assert response.status_code == 200, path
        assert response.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY, path
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY

    failures: dict[str, list[str]] = {}
    browser.get_log("browser")  # start from a clean log
    for width in WIDTHS:
        browser.set_window_size(width, 900)
        for name, path in pages:
            load(browser, live_server, path)
            problems = page_problems(browser, live_server)
            problems += [f"overflow: {what} is {wide}px in {box}px" for what, wide, box in
                         browser.execute_script(_OVERFLOW)]
            if width == 1280:
                browser.execute_script(AXE)
                problems += [f"axe {rule} ({impact}, {n} nodes): {targets}" for rule, impact, n, targets in
                             browser.execute_async_script(_AXE_RUN)]
                assert re.fullmatch(r"[a-z]{2}(-[A-Z]{2})?", browser.find_element(By.TAG_NAME, "html")
                                    .get_attribute("lang") or ""), path
            screenshot(browser, f"{name}-{width}")
            if problems:
                failures[f"{path} @ {width}px"] = problems
    assert not failures, "\n".join(f"{where}: {problem}" for where, found in failures.items() for problem in found)


def test_the_sign_in_page_is_self_contained_and_accessible(browser, live_server):
    browser.set_window_size(1280, 900)
    load(browser, live_server, "/admin/login")
    browser.execute_script(AXE)
    problems = page_problems(browser, live_server) + [
        f"axe {rule} ({impact})" for rule, impact, _, _ in browser.execute_async_script(_AXE_RUN)]
    screenshot(browser, "login-1280")
    assert problems == []
