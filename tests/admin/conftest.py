"""Console fixtures: users of each role, a settable clock, and a test-client sign-in helper."""
from __future__ import annotations

import datetime as dt
import re

import pytest

PASSWORD = "a long console passphrase"
ROLES = ("admin", "operator", "auditor")


class SettableClock:
    def __init__(self, now: dt.datetime | None = None):
        self.current = now or dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()

    def advance(self, **kw) -> None:
        self.current += dt.timedelta(**kw)


@pytest.fixture
def clock(services):
    services.clock = SettableClock()
    return services.clock


@pytest.fixture
def console_users(services):
    from govern.store.admins import create_admin

    for role in ROLES:
        create_admin(services.sessions, f"{role}-user", PASSWORD, role)
    return {role: f"{role}-user" for role in ROLES}


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"username": username, "password": password,
                                             "csrf_token": csrf_from(page.get_data(as_text=True))})
