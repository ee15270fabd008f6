"""Alembic environment. The engine comes from govern (config.attributes["engine"]) or GOVERN_DATABASE_URL."""
from __future__ import annotations

from alembic import context

from govern.store.schema import metadata

config = context.config
target_metadata = metadata()


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from govern.config import load_settings
    from govern.store.db import make_engine

    return make_engine(load_settings().database_url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
