"""Migration model_0001 rewrites stored retry/circuit_breaker JSON of either old spelling (what apply stored,
what the proxy read) to the keys of govern.domain.resilience, which the runtime now parses strictly. A data
migration can only be tested on rows written as the old code wrote them, so this test writes them by hand."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from govern.domain.resilience import BreakerPolicy, RetryPolicy, parse_stored
from govern.store.db import make_engine, upgrade

OLD_ROWS = {
    "from-apply": ({"attempts": 1, "backoff_seconds": 0.5}, {"failures": 2, "reset_seconds": 60.0}),
    "from-runtime-keys": ({"max_attempts": 0, "base_delay_seconds": 0.1, "max_delay_seconds": 2,
                           "max_retry_after_seconds": 4, "max_redirects": 1},
                          {"failure_threshold": 3, "reset_timeout_seconds": 10, "window_seconds": 20}),
    "empty": ({}, {}),
}


def _migrate(url):
    engine = make_engine(url)
    try:
        upgrade(engine, "users_0001")
        with engine.begin() as conn:
            system = conn.execute(sa.text(
                "INSERT INTO system (external_id, name, kind, description, sla, maintenance_windows, scopes, contract, "
                "created_at, updated_at) VALUES ('s', 's', 'generic', '', '{}', '[]', '[]', '{}', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id")).scalar_one()
            cred = conn.execute(sa.text(
                "INSERT INTO external_credential (external_id, system_id, protocol, scopes, principal_type, rotation, "
                "created_at, updated_at) VALUES ('c', :s, 'api_key_header', '[]', 'named', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP) RETURNING id"), {"s": system}).scalar_one()
            for name, (retry, breaker) in OLD_ROWS.items():
                conn.execute(sa.text(
                    "INSERT INTO named_credential (external_id, credential_id, url, api_type, timeout_seconds, retry, "
                    "circuit_breaker, allowed_methods, allowed_paths, during_maintenance, max_body_bytes, created_at, "
                    "updated_at) VALUES (:n, :c, 'https://x', 'REST', 10, :r, :b, '[]', '[]', 'refuse', 1000, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    {"n": name, "c": cred, "r": json.dumps(retry), "b": json.dumps(breaker)})
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT external_id, retry, circuit_breaker FROM named_credential")).all()
            cred_row = conn.execute(sa.text("SELECT resource, token_params, leeway_seconds FROM external_credential")).one()
        return {r[0]: tuple(json.loads(v) if isinstance(v, str) else v for v in r[1:]) for r in rows}, cred_row
    finally:
        engine.dispose()


def _check(url):
    rows, cred = _migrate(url)
    assert rows["from-apply"] == ({"attempts": 1, "backoff": 0.5}, {"failures": 2, "reset": 60.0})
    assert rows["from-runtime-keys"] == ({"attempts": 1, "backoff": 0.1, "max_backoff": 2, "max_retry_after": 4,
                                          "redirects": 1}, {"failures": 3, "reset": 10, "window": 20})
    assert rows["empty"] == ({}, {})
    for retry, breaker in rows.values():  # the runtime reads every migrated row
        parse_stored(RetryPolicy, retry, "retry")
        parse_stored(BreakerPolicy, breaker, "circuit_breaker")
    resource, token_params, leeway = (json.loads(v) if isinstance(v, str) else v for v in cred)
    assert (resource, token_params, leeway) == ([], {}, None)


def test_model_0001_on_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_model_0001_on_postgres(empty_postgres_url):
    _check(empty_postgres_url)
