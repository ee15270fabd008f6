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
