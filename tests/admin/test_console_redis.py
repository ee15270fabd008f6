"""Across processes: a sign-out in one app instance ends the session in another that shares Redis."""
from __future__ import annotations

import pytest

from tests.admin.conftest import csrf_from, sign_in

pytestmark = pytest.mark.redis


@pytest.fixture
def two_apps(settings, redis_url, redis_prefix):
    from govern.app import create_app
    from govern.bootstrap import build_services

    shared = settings.with_overrides(redis_url=redis_url, redis_prefix=redis_prefix)
    first, second = build_services(shared), build_services(shared)
    yield create_app({"TESTING": True}, services=first), create_app({"TESTING": True}, services=second)
    first.close()
    second.close()


@pytest.fixture
def users_in_shared_db(services):
    from govern.store.admins import create_admin

    from tests.admin.conftest import PASSWORD

    create_admin(services.sessions, "admin-user", PASSWORD, "admin")


def test_sign_out_in_one_instance_ends_the_session_in_the_other(two_apps, users_in_shared_db):
    app_a, app_b = two_apps
    a, b = app_a.test_client(), app_b.test_client()
    assert sign_in(a, "admin-user").status_code == 302
    cookie = a.get_cookie("govern_session").value
    b.set_cookie("govern_session", cookie)
    assert b.get("/admin/").status_code == 200
    token = csrf_from(a.get("/admin/").get_data(as_text=True))
    assert a.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert b.get("/admin/").status_code == 302
