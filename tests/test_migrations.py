"""Models and migrations agree, and the migrations run on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from govern.store.db import current_revisions, head_revisions, make_engine, upgrade
from govern.store.schema import metadata


def _diff(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata())


def _check(url):
    engine = make_engine(url)
    try:
        upgrade(engine)
        assert current_revisions(engine) == head_revisions(engine)
        assert _diff(engine) == []
        # A second upgrade is a no-op.
        upgrade(engine)
        tables = set(sa.inspect(engine).get_table_names())
        assert {"system", "external_credential", "named_credential", "integration_user", "permission_set",
                "assignment", "decision", "secret_ref", "finding", "suppression", "admin_user"} <= tables
    finally:
        engine.dispose()


def test_migrations_match_models_on_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_migrations_match_models_on_postgres(empty_postgres_url):
    _check(empty_postgres_url)


def test_single_head(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    assert len(head_revisions(engine)) == 1


def _backfill(url):
    """declog_0001 gives existing decision records an outcome from what they say (issue #16)."""
    from govern.store.db import upgrade as migrate

    engine = make_engine(url)
    try:
        migrate(engine, "users_0001")
        with engine.begin() as conn:
            for i, (allowed, status) in enumerate(((True, 200), (False, None), (True, 502), (True, None)), 1):
                conn.execute(sa.text(
                    "INSERT INTO decision (id, at, correlation_id, action, scopes_requested, scopes_granted, "
                    "allowed, rules, upstream_status, prev_hash, hash) VALUES (:id, '2026-01-01 00:00:00', :c, "
                    "'proxy', '[]', '[]', :a, '[]', :s, 'p', :h)"), {"id": i, "c": f"c{i}", "a": allowed, "s": status,
                                                                     "h": f"h{i}"})
        migrate(engine, "declog_0001")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT outcome, key_id FROM decision ORDER BY id")).all()
        assert [r[0] for r in rows] == ["allow", "deny", "error", "allow"]
        assert {r[1] for r in rows} == {None}  # written before the chain was keyed
    finally:
        engine.dispose()


def test_decision_outcome_backfill_on_sqlite(tmp_path):
    _backfill(f"sqlite:///{tmp_path / 'b.db'}")


@pytest.mark.postgres
def test_decision_outcome_backfill_on_postgres(empty_postgres_url):
    _backfill(empty_postgres_url)
