"""Every console page, as an admin, an operator and an auditor, in headless Chromium with every host but govern's
refused, against govern as `govern serve` wires it: the landscape from `govern apply`, decisions from real calls
(allowed, denied, failed upstream), two `govern audit` runs and a suppression, a rotation started from the console.
On every page:

- it carries the console's Content-Security-Policy, renders completely, and the browser logs no CSP
  violation and no failed request (nothing comes from outside);
- axe-core (tests/admin/data/axe.min.js, MPL-2.0) finds no serious or critical violation at 1280 px;
- no table is wider than its container at 1280 px and (the admin's tour, which has every button the other
  roles see) at 800 px;
- no raw JSON or internal names in the text (`_location`, `console:...:11:5`), and no link names a record by
  its database id (`?id=12`; a rotation run's number is its public id, as in /api/v1/rotations/<id>);
- a full-page screenshot of each page at each width checked lands in artifacts/screenshots/ (the admin's
  under its page name, the other roles' with the role in front).
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By

from sqlmodel import select

from govern.admin.lockdown import CONTENT_SECURITY_POLICY, policy
from govern.store.tables import SecretRef
from tests.admin.browser import browser, live_server, screenshot  # noqa: F401 - fixtures
from tests.admin.conftest import PASSWORD, csrf_from
from tests.admin.test_console_audit_pages import audit, make_users
from tests.admin.test_console_browser import sign_in, wait
from tests.e2e.conftest import live, resources  # noqa: F401 - fixtures

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


_LEAKS = """
const text = document.body.innerText;
const out = [];
for (const [name, re] of [['raw JSON', /[{\\[]\\s*"[^"\\n]+"\\s*:/], ['internal key', /\\b_(location|suppression)\\b/],
                          ['form location', /console:[a-z_.]+:\\d+:\\d+/]]) {
  const m = text.match(re); if (m) out.push(`${name}: ${m[0]}`);
}
document.querySelectorAll('a[href]').forEach(a => {
  const url = new URL(a.href, location.href);
  if (url.origin === location.origin && /(^|&)id=\\d+(&|$)/.test(url.search.slice(1))
      && !url.pathname.startsWith('/admin/rotations/details/'))
    out.push(`database id in a link: ${url.pathname}${url.search}`);
});
return out;
"""


@pytest.fixture
def tour(live, tmp_path):
    """The world the tour walks, made the way users make it."""
    make_users(live)
    token = live.govern_token(scope="orders.read items.read")
    assert live.upstream_token(token, "shop-orders").status_code == 200
    assert live.upstream_token(token, "shop-orders", scope="orders.write").status_code in (400, 403)
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    assert live.proxy(token, "stock-api", "v1/orders/1").status_code == 403
    live.resources.fail_next(1, status=500)
    assert live.proxy(token, "stock-api", "v1/items/2").status_code == 500
    assert live.services.decision_log.flush()
    first = audit(live, tmp_path, "first")
    finding = first["findings"][0]
    result = live.runner.invoke(["audit", "suppress", finding["rule_id"], finding["subject"], "--owner", "sec@example.com",
                                 "--justification", "Accepted for the tour.", "--ticket", "SEC-1", "--until", "2099-01-01"])
    assert result.exit_code == 0, result.output
    audit(live, tmp_path, "second")
    # An operator starts a rotation from the console (a POST with the operator's session and CSRF token).
    http = requests.Session()
    page = http.get(f"{live.base}/admin/login", timeout=30)
    http.post(f"{live.base}/admin/login", timeout=30, headers={"Origin": live.base},
              data={"username": "operator-user", "password": PASSWORD, "csrf_token": csrf_from(page.text)})
    with live.services.sessions() as s:
        ref = s.exec(select(SecretRef).where(SecretRef.external_id == "integration_user/order-sync/client_secret")).one()
    page = http.get(f"{live.base}/admin/secrets/", timeout=30)
    started = http.post(f"{live.base}/admin/secrets/rotate/", timeout=30, headers={"Origin": live.base},
                        data={"ref": ref.id, "csrf_token": csrf_from(page.text)})
    assert started.status_code == 200 and "started (run" in started.text
    return live


class _Links(HTMLParser):
    """The links of a server-rendered page: (href, classes, inside <nav>)."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, set[str], bool]] = []
        self._nav = 0

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "nav":
            self._nav += 1
        elif tag == "a" and found.get("href"):
            self.links.append((found["href"], set((found.get("class") or "").split()), self._nav > 0))

    def handle_endtag(self, tag):
        if tag == "nav" and self._nav:
            self._nav -= 1


def _links(http, base: str, path: str) -> list[tuple[str, set[str], bool]]:
    page = http.get(f"{base}{path}", timeout=30)
    assert page.status_code == 200, path
    parser = _Links()
    parser.feed(page.text)
    return [(urljoin(f"{base}{path}", href), classes, nav) for href, classes, nav in parser.links]


def console_pages(http, base: str) -> list[tuple[str, str]]:
    """(name, path) for the dashboard, two lists its figures link to, every page in the menu, and the first
    record's page of every list. Found in the server's HTML (the signed-in session's), not by a browser visit
    to each list: the browser then loads each page once, to check it."""
    dashboard = _links(http, base, "/admin/")
    menu = sorted({urlsplit(h).path for h, _, nav in dashboard if nav and urlsplit(h).path.startswith("/admin/")
                   and urlsplit(h).netloc == urlsplit(base).netloc})
    pages = [("dashboard", "/admin/")]
    # Lists opened from the dashboard's figures carry active filters, which render their own form fields.
    for css, name in (("gv-n-denied", "filtered-decisions"), ("gv-n-failed-rotations", "filtered-rotations")):
        target = urlsplit(next(h for h, classes, _ in dashboard if css in classes))
        pages.append((name, f"{target.path}?{target.query}"))
    for path in menu:
        if path == "/admin/":
            continue
        pages.append((path.strip("/").replace("/", "-"), path))
        details = [h for h, _, nav in _links(http, base, path) if not nav and "/details/" in h]
        if details:
            target = urlsplit(details[0])
            pages.append((path.strip("/").replace("/", "-") + "-details", f"{target.path}?{target.query}"))
    # Pages no menu entry opens: an audit run, the search results, and the user page with its right-sizing.
    run = urlsplit(next(h for h, classes, _ in _links(http, base, "/admin/audit_runs/") if "gv-run-link" in classes)).path
    pages += [("audit-run", run), ("search", "/admin/search/?q=order"),
              ("integration-user-order-sync", "/admin/integration_users/details/?id=order-sync"),
              # A per-user principal with its connection (and, for an admin, Connect), and its credential.
              ("principal-shop-rt-alice", "/admin/principals/details/?id=shop-rt/alice"),
              ("credential-shop-rt", "/admin/credentials/details/?id=shop-rt")]
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


# The admin's tour runs on both backends (every page's queries answer on PostgreSQL too). The other roles see the
# same pages from the same queries (roles gate views and buttons, never a query): their tours, two thirds of
# this file's time, run in the SQLite pass only.
@pytest.mark.parametrize("role", ["admin", pytest.param("operator", marks=pytest.mark.one_backend),
                                  pytest.param("auditor", marks=pytest.mark.one_backend)])
def test_every_page_is_self_contained_accessible_and_fits(browser, tour, role):
    base = tour.base
    sign_in(browser, base, f"{role}-user")
    http = requests.Session()  # the browser's session, for what needs no browser
    for cookie in browser.get_cookies():
        http.cookies.set(cookie["name"], cookie["value"])
    pages = console_pages(http, base)
    assert len(pages) >= 36, pages  # the menu, record pages and the form: the tour must not silently shrink
    if role != "admin":  # the form is the admin's: another role is refused, and tours the rest
        pages = [(name, path) for name, path in pages if name != "integration-user-form"]

    # Every console response carries the policy (the page and what it loads).
    # One widening: a page showing an admin the Connect button may send that form on to the upstream's
    # authorize origin (and only there).
    authorize = "{0.scheme}://{0.netloc}".format(urlsplit(tour.upstream.authorize_url))
    allowed = {CONTENT_SECURITY_POLICY} | ({policy((authorize,))} if role == "admin" else set())
    for _, path in pages + [("theme", "/admin/theme/bootstrap.min.css"), ("login", "/admin/login")]:
        response = http.get(f"{base}{path}", timeout=30)
        assert response.status_code == 200, path
        assert response.headers.get("Content-Security-Policy") in allowed, path
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY
    # The static files each page loads (about 20) come from the browser's cache, not a round trip per page;
    # the pages themselves are never stored.
    for asset in ("/admin/console-static/console.js", "/admin/static/vendor/jquery.min.js"):
        assert http.get(f"{base}{asset}", timeout=30).headers.get("Cache-Control") == "public, max-age=3600", asset
    assert http.get(f"{base}/admin/", timeout=30).headers.get("Cache-Control") == "no-store"
    if role != "admin":
        refused = http.get(f"{base}/admin/integration_users/save/", timeout=30)
        assert refused.status_code == 403 and refused.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY

    failures: dict[str, list[str]] = {}
    browser.get_log("browser")  # start from a clean log
    # The fit at 800 px is the admin's to check: another role sees the same pages with fewer buttons.
    for width in WIDTHS if role == "admin" else WIDTHS[:1]:
        browser.set_window_size(width, 900)
        for name, path in pages:
            load(browser, base, path)
            problems = page_problems(browser, base)
            problems += [f"overflow: {what} is {wide}px in {box}px" for what, wide, box in
                         browser.execute_script(_OVERFLOW)]
            problems += browser.execute_script(_LEAKS)
            if width == 1280:
                browser.execute_script(AXE)
                problems += [f"axe {rule} ({impact}, {n} nodes): {targets}" for rule, impact, n, targets in
                             browser.execute_async_script(_AXE_RUN)]
                assert re.fullmatch(r"[a-z]{2}(-[A-Z]{2})?", browser.find_element(By.TAG_NAME, "html")
                                    .get_attribute("lang") or ""), path
            screenshot(browser, f"{name}-{width}" if role == "admin" else f"{role}-{name}-{width}")
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
