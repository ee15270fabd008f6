"""The console's audit pages in headless Chromium at 1280 and 800 px, against govern as `govern serve` wires it:
the landscape from `govern apply`, decisions from real calls through the app, audits run with `govern audit`
and a suppression added with `govern audit suppress`.

- The audit-runs list shows each run's new, resolved and reopened counts (as stored by the run).
- A run's page shows its findings with the evidence as fields (no JSON, no `_location`), and links them by name.
- Each download (HTML, JSON, CSV, SARIF) is fetched with the browser's session: its content type is right and
  it parses (JSON and SARIF as JSON, CSV with the report's columns, HTML as a document), and it holds the run's
  findings.
- Suppressions show owner, ticket and expiry; one ending within two weeks is listed as about to expire.
- An auditor sees all of it and no button.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from html.parser import HTMLParser

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from sqlmodel import select

from govern.store.tables import AuditRun
from tests.admin.browser import browser, screenshot, screenshot_top  # noqa: F401 - fixtures
from tests.admin.test_console_browser import sign_in, wait
from tests.e2e.conftest import live, resources  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.db, pytest.mark.slow]

WIDTHS = (1280, 800)
RAW = re.compile(r'_location|_suppression|"[a-z_]+":\s|console:[a-z_.]+:\d+:\d+|[?&]id=\d+\b')


def make_users(live) -> None:
    from govern.store.admins import create_admin
    from tests.admin.conftest import PASSWORD

    for role in ("admin", "operator", "auditor"):
        create_admin(live.services.sessions, f"{role}-user", PASSWORD, role)


def session_of(driver) -> requests.Session:
    http = requests.Session()
    for cookie in driver.get_cookies():
        http.cookies.set(cookie["name"], cookie["value"])
    return http


def audit(live, tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    result = live.runner.invoke(["audit", "--format", "json", "--out", str(out)])
    assert result.exit_code in (0, 1), result.output
    return json.loads(out.read_text())


def no_overflow(driver) -> list:
    return driver.execute_script("""
      const out = [];
      document.querySelectorAll('table').forEach(t => { const box = t.parentElement;
        if (t.scrollWidth > box.clientWidth + 1) out.push([t.closest('[id]') ? t.closest('[id]').id : '', t.scrollWidth, box.clientWidth]); });
      const d = document.documentElement; if (d.scrollWidth > d.clientWidth + 1) out.push(['page', d.scrollWidth, d.clientWidth]);
      return out;""")


def set_shop_owner(live, tmp_path, owner: str | None) -> None:
    path = tmp_path / "shop.yaml"
    extra = f", contract: {{owner: {owner}}}" if owner else ""
    path.write_text("apiVersion: govern/v1\nkind: Landscape\nsystems:\n"
                    f"  - {{id: shop, name: Shop, kind: erp, scopes: [orders.read, orders.write]{extra}}}\n")
    result = live.runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_audit_runs_findings_downloads_and_expiring_suppressions(browser, live, tmp_path):
    make_users(live)
    token = live.govern_token(scope="orders.read items.read")
    assert live.upstream_token(token, "shop-orders").status_code == 200
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200
    assert live.services.decision_log.flush()

    first = audit(live, tmp_path, "first")
    assert first["findings"], "the e2e landscape has findings to show"
    # Accept one finding's risk for ten days (it is suppressed in the next run, and about to expire).
    target = first["findings"][0]
    until = (live.services.clock.now().date() + dt.timedelta(days=10)).isoformat()
    result = live.runner.invoke(["audit", "suppress", target["rule_id"], target["subject"],
                                 "--owner", "sec-team@example.com", "--justification", "Accepted until the migration.",
                                 "--ticket", "SEC-42", "--until", until])
    assert result.exit_code == 0, result.output
    # A change through `govern apply` resolves a finding (shop gets an owner), and undoing it reopens it.
    set_shop_owner(live, tmp_path, "shop-team@example.com")
    audit(live, tmp_path, "second")
    set_shop_owner(live, tmp_path, None)
    last_report = audit(live, tmp_path, "third")
    with live.services.sessions() as s:
        runs = s.exec(select(AuditRun).order_by(AuditRun.id)).all()
        stored = [(r.id, len(r.new), len(r.resolved), len(r.reopened)) for r in runs]
    assert [row[1:] for row in stored] == [(len(first["findings"]), 0, 0), (0, 1, 0), (0, 0, 1)]

    sign_in(browser, live.base, "auditor-user")
    for width in WIDTHS:
        browser.set_window_size(width, 900)
        browser.get(f"{live.base}/admin/audit_runs/")
        wait(browser).until(EC.presence_of_element_located((By.ID, "gv-audit-runs")))
        for run_id, new, resolved, reopened in stored:
            row = browser.find_element(By.ID, f"gv-run-{run_id}")
            shown = [int(row.find_element(By.CSS_SELECTOR, f".gv-n-{k}").text) for k in ("new", "resolved", "reopened")]
            assert shown == [new, resolved, reopened], (run_id, shown)
        expiring = browser.find_element(By.ID, "gv-expiring").text
        assert "SEC-42" in expiring and "sec-team@example.com" in expiring and until in expiring
        assert no_overflow(browser) == []
        assert not RAW.search(browser.page_source)
        screenshot(browser, f"audit-runs-{width}")

        last = stored[-1][0]
        browser.find_element(By.CSS_SELECTOR, f"#gv-run-{last} a.gv-run-link").click()
        wait(browser).until(EC.presence_of_element_located((By.ID, "gv-run-findings")))
        findings = browser.find_elements(By.CSS_SELECTOR, ".gv-finding")
        assert len(findings) == len(last_report["findings"])
        page = browser.page_source
        assert not RAW.search(page), RAW.search(page).group(0)
        # Evidence as fields: each finding's evidence keys are labels (dt), not JSON text.
        with_evidence = next(f for f in last_report["findings"] if f["evidence"])
        block = browser.find_element(By.ID, f"gv-finding-{with_evidence['fingerprint']}")
        labels = [dt_.text for dt_ in block.find_elements(By.CSS_SELECTOR, ".gv-evidence dt")]
        assert labels and set(labels) <= {k.replace("_", " ") for k in with_evidence["evidence"]}
        suppressed = browser.find_element(By.ID, f"gv-finding-{target['fingerprint']}").text
        assert "suppressed" in suppressed and "SEC-42" in suppressed
        assert [f.get_attribute("action") for f in browser.find_elements(By.CSS_SELECTOR, "form[method=post]")] == [
            f"{live.base}/admin/logout"]  # read-only: the auditor's only form signs out
        assert no_overflow(browser) == []
        screenshot(browser, f"audit-run-{width}")
        screenshot_top(browser, f"audit-run-top-{width}")

    # The downloads, with the auditor's session: content type, and each parses and holds the run's findings.
    http = session_of(browser)
    links = {fmt: browser.find_element(By.ID, f"gv-download-{fmt}").get_attribute("href")
             for fmt in ("html", "json", "csv", "sarif")}
    got = {fmt: http.get(url, timeout=30) for fmt, url in links.items()}
    for fmt, response in got.items():
        assert response.status_code == 200, fmt
        assert f'filename="govern-audit-run-{last}.' in response.headers["Content-Disposition"], fmt
    assert got["json"].headers["Content-Type"] == "application/json"
    report = got["json"].json()
    assert report["run"]["id"] == last and len(report["findings"]) == len(last_report["findings"])
    assert got["sarif"].headers["Content-Type"] == "application/sarif+json"
    sarif = json.loads(got["sarif"].text)
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == len(report["findings"])
    assert got["csv"].headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got["csv"].text)))
    assert len(rows) == len(report["findings"]) and {r["fingerprint"] for r in rows} == {
        f["fingerprint"] for f in report["findings"]}
    assert got["html"].headers["Content-Type"].startswith("text/html")
    parsed = _Html()
    parsed.feed(got["html"].text)
    assert got["html"].text.lower().startswith("<!doctype html>") and "table" in parsed.tags
    assert target["rule_id"] in got["html"].text
    # An unknown format or run is a 404, not a 500.
    assert http.get(f"{live.base}/admin/audit_runs/{last}/report.exe", timeout=30).status_code == 404
    assert http.get(f"{live.base}/admin/audit_runs/99999999999/", timeout=30).status_code == 404

    # The suppressions list: owner, ticket and expiry, the expiry marked.
    browser.set_window_size(1280, 900)
    browser.get(f"{live.base}/admin/suppressions/")
    row = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.model-list tbody tr"))).text
    assert "sec-team@example.com" in row and "SEC-42" in row and "in 10 d" in row
