"""Canary: a secret set through the console forms never appears in any console page, log line or admin action."""
from __future__ import annotations

import io
import logging

from sqlmodel import select

from govern.store.tables import AdminAction, ExternalCredential, IntegrationUser, SecretRef
from tests.admin.conftest import csrf_from, sign_in
from tests.admin.test_console_views import PAGES
from tests.factories import make_landscape

CANARY_CREDENTIAL = "canary-CREDENTIAL-9f3b1c7e5a"
CANARY_USER = "canary-USER-2d8e4a6c0b"


def test_console_secret_forms_never_echo_the_value(client, console_users, clock, services, caplog):
    from govern.logs import configure_logging

    make_landscape(services, client_secret=None)
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)  # the JSON log handler production uses, at its most verbose
    caplog.set_level(logging.DEBUG)
    sign_in(client, console_users["admin"])
    token = csrf_from(client.get("/admin/").get_data(as_text=True))
    with services.sessions() as s:
        cred_id = s.exec(select(ExternalCredential)).one().id
        user_id = s.exec(select(IntegrationUser)).one().id

    responses = [
        client.post("/admin/credentials/set-secret/", data={"csrf_token": token, "credential": "erp-cc",
                                                           "field": "client_secret", "value": CANARY_CREDENTIAL}),
        client.post("/admin/integration_users/set-secret/", data={"csrf_token": token, "user": "order-sync",
                                                                 "value": CANARY_USER}),
        # A refused write (unknown field) must not echo the value either.
        client.post("/admin/credentials/set-secret/", data={"csrf_token": token, "credential": "erp-cc",
                                                           "field": "no_such_field", "value": CANARY_CREDENTIAL}),
    ]
    assert [r.status_code for r in responses] == [302, 302, 302]
    with services.sessions() as s:
        assert {r.field for r in s.exec(select(SecretRef))} == {"client_secret"}
        assert len(s.exec(select(SecretRef)).all()) == 2

    pages = PAGES + [f"/admin/credentials/details/?id={cred_id}", f"/admin/integration_users/details/?id={user_id}",
                     "/admin/secrets/details/?id=1", "/admin/secrets/details/?id=2",
                     "/admin/integration_users/save/?user=order-sync"]
    seen = ""
    for page in pages:
        response = client.get(page, follow_redirects=True)
        assert response.status_code == 200, page
        seen += response.get_data(as_text=True)
    assert "set on" in seen
    for canary in (CANARY_CREDENTIAL, CANARY_USER):
        assert canary not in seen
        assert canary not in stream.getvalue()
        assert canary not in caplog.text
    with services.sessions() as s:
        actions = s.exec(select(AdminAction)).all()
    recorded = repr([(a.before, a.after, a.subject) for a in actions])
    assert CANARY_CREDENTIAL not in recorded and CANARY_USER not in recorded
    assert [a.action for a in actions].count("secret.put") == 2
