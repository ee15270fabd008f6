"""`govern audit` on decisions written by the real hash-chained DecisionLog (ids and hashes assigned by its
writer): staleness and denied spikes, all four report formats, the --fail-on gate, and the HTML report
rendered in headless Chromium."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from govern.domain.access import AccessDecision, AccessRequest, Caller
from tests.audit.schema_check import errors as schema_errors
from tests.audit.test_apply_roundtrip import EXAMPLE, apply_example_and_log

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC)


def _log(services, user, ip, nc, method, path, *, allowed, days_ago, count=1):
    req = AccessRequest(caller=Caller(integration_user=user, scopes=(), source_ip=ip), action="proxy",
                        named_credential=nc, method=method, path=path)
    decision = AccessDecision(allowed=allowed, rules=("permit:x",) if allowed else ("deny:operation_not_granted",))
    for i in range(count):
        services.decision_log.append(req, decision, at=NOW - dt.timedelta(days=days_ago, seconds=i))


def _write_all(runner, tmp_path, *extra) -> dict[str, Path]:
    out = {}
    for fmt in ("json", "html", "csv", "sarif"):
        out[fmt] = tmp_path / f"audit.{fmt}"
        result = runner.invoke(["audit", "--format", fmt, "--out", str(out[fmt]), *extra])
        assert result.exit_code == 0, result.output
    return out


def _check_formats(files: dict[str, Path]) -> dict:
    report = json.loads(files["json"].read_text())
    schema = json.loads((ROOT / "docs" / "audit-report.schema.json").read_text())
    assert schema_errors(schema, report) == []
    rows = list(csv.DictReader(io.StringIO(files["csv"].read_text())))
    assert len(rows) == len(report["findings"])
    assert {r["rule_id"] for r in rows} == {f["rule_id"] for f in report["findings"]}
    sarif = json.loads(files["sarif"].read_text())
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == len(report["findings"])
    html = files["html"].read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script src" not in html  # self-contained
    return report


def test_fresh_instance_with_no_decisions(services, runner, tmp_path):
    assert runner.invoke(["apply", "-f", str(EXAMPLE)]).exit_code == 0
    report = _check_formats(_write_all(runner, tmp_path))
    assert report["findings"] and not any(f["rule_id"] in ("GOV-STALE-001", "GOV-BEHAV-001") for f in report["findings"])
    # every user is younger than the window: none is judged on unused grants
    assert report["rightsizing"] and all(not r["judged"] for r in report["rightsizing"])
    gate = lambda sev: runner.invoke(["audit", "--fail-on", sev, "--out", str(tmp_path / "gate")]).exit_code  # noqa: E731
    assert gate("critical") == 1 and gate("high") == 1 and gate("info") == 1


def test_stale_users_and_denied_spikes_from_the_real_log(services, runner, tmp_path):
    apply_example_and_log(services, runner, days_old=200)
    SOBJ = "/services/data/v61.0/sobjects"
    # used 60 days ago: outside the 30-day window but inside the 90-day staleness limit, so not stale
    _log(services, "support-case-escalation", "10.50.0.9", "salesforce-cases", "GET", f"{SOBJ}/Case/1",
         allowed=True, days_ago=60)
    # a burst of denials on one day against a quiet baseline: a spike
    _log(services, "hubspot-lead-sync", "54.174.62.10", "salesforce-cases", "DELETE", f"{SOBJ}/Lead/1",
         allowed=False, days_ago=2, count=40)
    # the same number spread evenly over the window: a steady background, no spike
    for day in range(1, 21):
        _log(services, "checkout-payments", "10.30.1.7", "stripe-api", "DELETE", "/v1/charges/ch_1",
             allowed=False, days_ago=day, count=2)
    assert services.decision_log.flush()
    assert runner.invoke(["log", "verify"]).exit_code == 0  # the writer chained every record

    report = _check_formats(_write_all(runner, tmp_path))
    found = {(f["rule_id"], f["subject"]): f for f in report["findings"]}
    stale = {s for r, s in found if r == "GOV-STALE-001"}
    # used in the window: erp-order-sync, finance-reconciliation, checkout-payments, warehouse-loader;
    # 60 days ago: support-case-escalation; never: sandbox-app (the local sandbox's user)
    assert stale == {"hubspot-lead-sync", "reporting-dashboard", "salesforce-invoice-reader", "sandbox-app"}
    assert "not been used in the last 90 days (created 200 days ago)" in found[("GOV-STALE-001",
                                                                              "reporting-dashboard")]["message"]
    spikes = {s for r, s in found if r == "GOV-BEHAV-001"}
    assert spikes == {"hubspot-lead-sync"}
    assert found[("GOV-BEHAV-001", "hubspot-lead-sync")]["evidence"]["denied"] == 40
    # the rightsizing of the users that did work in the window is judged and proved
    recs = {r["user"]: r for r in report["rightsizing"]}
    assert recs["erp-order-sync"]["judged"] and recs["erp-order-sync"]["proof"]["would_deny"] == 0
    assert runner.invoke(["audit", "--fail-on", "high", "--out", str(tmp_path / "g")]).exit_code == 1


@pytest.mark.browser
def test_html_report_renders_in_chromium(services, runner, tmp_path):
    from tests.conftest import need

    if not (shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver")):
        need("chromium", "no chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    apply_example_and_log(services, runner, days_old=200)
    _log(services, "hubspot-lead-sync", "54.174.62.10", "salesforce-cases", "DELETE",
         "/services/data/v61.0/sobjects/Lead/1", allowed=False, days_ago=2, count=40)
    assert services.decision_log.flush()
    for _ in range(2):  # two runs: the trend chart has a line
        html = tmp_path / "audit.html"
        assert runner.invoke(["audit", "--format", "html", "--out", str(html)]).exit_code == 0
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--window-size=1280,2000"):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    except Exception as exc:  # noqa: BLE001 - the browser is the thing that is missing
        need("chromium", type(exc).__name__)
    try:
        driver.get(html.as_uri())
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Least-privilege audit")
        charts = driver.find_elements(By.CSS_SELECTOR, "svg[role=img]")
        assert len(charts) >= 2 and all(c.size["width"] > 100 and c.size["height"] > 50 for c in charts)
        assert driver.find_element(By.ID, "user-hubspot-lead-sync").is_displayed()
        # nothing overflows the page sideways (long paths and evidence wrap)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= driver.execute_script("return window.innerWidth"), width
        shots = ROOT / "artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(height + 40, 800), 6000))
        assert driver.save_screenshot(str(shots / "audit-report.png"))
    finally:
        driver.quit()


def test_a_log_younger_than_the_window_judges_nobody(services, runner, tmp_path):
    """Turning the decision log on today must not make every older user look unused."""
    assert runner.invoke(["apply", "-f", str(EXAMPLE)]).exit_code == 0
    from govern.store.db import session_scope
    from govern.store.tables import IntegrationUser

    with session_scope(services.sessions) as s:
        for u in s.query(IntegrationUser):
            u.created_at = NOW - dt.timedelta(days=200)
    _log(services, "checkout-payments", "10.30.1.7", "stripe-api", "GET", "/v1/charges/ch_1", allowed=True, days_ago=1)
    assert services.decision_log.flush()
    out, rec = tmp_path / "r.json", tmp_path / "rec.yaml"
    assert runner.invoke(["audit", "--out", str(out), "--recommend", str(rec)]).exit_code == 0
    report = json.loads(out.read_text())
    assert report["rightsizing"] and all(not r["judged"] and "does not cover" in r["reason"]
                                         for r in report["rightsizing"] if r["user"] != "data-migration-2026")
    assert not any(f["rule_id"].startswith("GOV-USAGE-00") and f["rule_id"] != "GOV-USAGE-005"
                   or f["rule_id"] in ("GOV-STALE-002", "GOV-API-001", "GOV-API-002") for f in report["findings"])


def test_token_issuance_and_connect_records_are_not_request_patterns(services):
    """An issued govern token's scopes are the user's whole allowance, not what it used (issue #16 records it)."""
    from govern.store.audit_loader import load_model

    _log(services, "u1", "127.0.0.1", "erp-api", "GET", "/orders", allowed=True, days_ago=1)
    services.decision_log.append(None, None, action="oauth_token", integration_user="u1", allowed=True,
                                 scopes_granted=["orders.read", "orders.write"], rules=["permit:client_credentials"])
    services.decision_log.append(None, None, action="connect", integration_user="u1", principal="alice",
                                 allowed=True, rules=["permit:connect"])
    with services.sessions() as s:
        usage = load_model(s, NOW + dt.timedelta(minutes=1)).usage["u1"]
    assert [(p.named_credential, p.path) for p in usage.patterns] == [("erp-api", "/orders")]
    assert usage.principals == {}
