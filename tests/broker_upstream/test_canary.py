"""Canary: upstream client secrets, refresh tokens and access tokens never reach logs, error text or the database."""
from __future__ import annotations

import io
import logging

import sqlalchemy as sa

from govern.errors import GovernError
from govern.logs import configure_logging
from tests.broker_upstream.conftest import put_secret, wire_credential

CLIENT_SECRET = "canary-client-secret-5c1e"


def test_no_secret_in_logs_errors_or_database(broker_services, fake_upstream):
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token", secret=CLIENT_SECRET)
        fake_upstream.refresh_grace_seconds = 60
        refresh = fake_upstream.issue_refresh_token("erp-client")
        put_secret(broker_services, names["credential"], "default", "refresh_token", refresh)
        src = broker_services.upstream_tokens
        seen = [refresh]
        errors = []
        for fault in ("drop_after_commit", None, "invalid_grant", "5xx", "429"):
            if fault:
                fake_upstream.inject(fault, grant="refresh_token")
            try:
                seen.append(src.get_token(names["named_credential"], "default", ("orders.read",),
                                          force_refresh=True).access_token.reveal())
            except GovernError as exc:
                errors.append(exc)
        seen += list(fake_upstream.refresh_tokens)  # every refresh token the upstream ever issued
        assert len(errors) == 4
        logging.getLogger().handlers[0].flush()
        # govern's own lines (the fake upstream is authlib, which logs issued tokens at debug level: STYLE.md)
        govern_lines = "\n".join(line for line in stream.getvalue().splitlines() if '"logger": "govern' in line)
        text = govern_lines + repr([(e.to_problem(), str(e), e.headers) for e in errors])
        with broker_services.engine.connect() as conn:
            for table in ("refresh_journal", "secret_ref", "secret_version", "upstream_token_lock"):
                text += repr([tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))])
        assert "reconciling in-doubt" in govern_lines and "principal_needs_reconnect" in govern_lines
        for value in [CLIENT_SECRET, *seen]:
            assert value not in text
    finally:
        configure_logging("INFO")

