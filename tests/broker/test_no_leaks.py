"""Canaries: the client secret, govern's access token and the upstream token never reach logs, the
decision log, or error responses."""
from __future__ import annotations

import logging

import sqlalchemy as sa

from tests.broker.conftest import UPSTREAM_TOKEN, ask, decisions, issue


def test_tokens_and_secrets_stay_out_of_logs_and_the_decision_log(broker_client, broker_services, landscape, caplog):
    caplog.set_level(logging.DEBUG)
    token = issue(broker_client).get_json()["access_token"]
    assert ask(broker_client, token).status_code == 200
    denied = ask(broker_client, token, scope="orders.write")
    wrong = issue(broker_client, secret="s3cret-client-secret-valuX")
    decisions(broker_services)
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    for canary in ("s3cret-client-secret-value", token, token.split(".")[2], UPSTREAM_TOKEN):
        assert canary not in logged
        assert canary not in denied.get_data(as_text=True) and canary not in wrong.get_data(as_text=True)
    with broker_services.engine.connect() as conn:
        dump = str(conn.execute(sa.text("SELECT * FROM decision")).all())
        keys = str(conn.execute(sa.text("SELECT * FROM signing_key")).all())
    assert UPSTREAM_TOKEN not in dump and token not in dump
    assert "PRIVATE" not in keys
