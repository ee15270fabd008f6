"""A private PostgreSQL database for one benchmark run: created, migrated by the caller, dropped at the end."""
from __future__ import annotations

import uuid
from collections.abc import Callable


def create_private_database(base_url: str) -> tuple[str, Callable[[], None]]:
    """Create `govern_bench_<random>` next to `base_url`; return its URL and a function that drops it."""
    import sqlalchemy as sa

    from govern.store.db import make_engine

    name = f"govern_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base_url.rpartition("/")[0] + "/" + name, drop
