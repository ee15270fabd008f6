"""The dashboard over real HTTP, from decisions that integrations produced through the API (govern wired as
`govern serve` wires it, the landscape from `govern apply`): an allowed and a denied upstream-token request,
an allowed call and one that the upstream failed. Success, denials and failures are counted apart, what needs
attention is marked (a class, and words for a screen reader), and every number opens the list behind it.
"""
from __future__ import annotations

import re
from html import unescape

import pytest
import requests

from tests.admin.conftest import PASSWORD, csrf_from
from tests.e2e.conftest import live, resources  # noqa: F401 - fixtures

pytestmark = [pytest.mark.db, pytest.mark.slow]


def console(live, role: str = "admin") -> requests.Session:
    from govern.store.admins import create_admin

    create_admin(live.services.sessions, f"{role}-user", PASSWORD, role)
    http = requests.Session()
    page = http.get(f"{live.base}/admin/login", timeout=30)
    answer = http.post(f"{live.base}/admin/login", timeout=30, headers={"Origin": live.base},
                       data={"username": f"{role}-user", "password": PASSWORD, "csrf_token": csrf_from(page.text)})
    assert answer.status_code == 200 and 'id="gv-whoami"' in answer.text
    return http


def system_row(html: str, system: str) -> str:
    match = re.search(rf'<tr class="gv-system-row[^"]*" id="gv-system-{system}".*?</tr>', html, re.S)
    assert match, system
    return match.group(0)


def figure(row: str, name: str) -> tuple[int, str]:
    """(the number shown, the link behind it) for the figure whose class is gv-n-<name>."""
    match = re.search(rf'<a class="gv-n-{name}" href="([^"]+)">(\d+)</a>', row)
    assert match, (name, row)
    return int(match.group(2)), unescape(match.group(1))


def listed(http: requests.Session, base: str, link: str) -> int:
    """How many records the linked console list shows (its "List (N)" tab, or none)."""
    page = http.get(base + link, timeout=30)
    assert page.status_code == 200, link
    count = re.search(r"List \((\d+)\)", page.text)
    return int(count.group(1)) if count else 0


def test_the_dashboard_tells_success_denial_and_failure_apart_and_links_each_number(live):
    token = live.govern_token(scope="orders.read items.read")
    assert live.upstream_token(token, "shop-orders").status_code == 200  # allowed
    assert live.upstream_token(token, "shop-orders", scope="orders.write").status_code in (400, 403)  # denied
    assert live.proxy(token, "stock-api", "v1/items/1").status_code == 200  # allowed
    live.resources.fail_next(1, status=500)
    assert live.proxy(token, "stock-api", "v1/items/2").status_code == 500  # failed upstream
    assert live.services.decision_log.flush()

    http = console(live)
    html = http.get(f"{live.base}/admin/", timeout=30).text
    shop, stock = system_row(html, "shop"), system_row(html, "stock")
    counts = {(system, name): figure(row, name)[0] for system, row in (("shop", shop), ("stock", stock))
              for name in ("volume", "success", "denied", "failed")}
    assert counts == {("shop", "volume"): 2, ("shop", "success"): 1, ("shop", "denied"): 1, ("shop", "failed"): 0,
                      ("stock", "volume"): 2, ("stock", "success"): 1, ("stock", "denied"): 0,
                      ("stock", "failed"): 1}

    # Every number opens the decisions behind it: the list shows as many records as the number says.
    for system, row in (("shop", shop), ("stock", stock)):
        for name in ("volume", "success", "denied", "failed"):
            number, link = figure(row, name)
            assert listed(http, live.base, link) == number, (system, name, link)

    # One failure in two decisions is over the threshold: stock needs attention, shop (a denial) does not.
    assert "gv-attention-row" in stock and "Needs attention: " in stock
    assert "gv-attention" not in shop and "Needs attention" not in shop
    assert re.search(r'<li>System <a href="#gv-system-stock">stock</a></li>', html)
    assert "#gv-system-shop" not in html

    # The open-findings figures link to their lists too (none yet: each list is empty).
    for severity in ("critical", "high"):
        link = unescape(re.search(rf'class="gv-kpi gv-sev-{severity} gv-n-findings-{severity}" href="([^"]+)"',
                                  html).group(1))
        assert listed(http, live.base, link) == 0
