"""Every migration after the first runs on an instance that holds data, on SQLite (foreign keys on, as govern
opens it) and PostgreSQL: a landscape applied with `govern apply` at the first revision, then `upgrade` to head.
A batch (table rebuild) migration on a table that others refer to failed here on SQLite (users_0001)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from govern.store.db import make_engine, upgrade

ROWS = [  # (table, values); every other NOT NULL column gets a neutral value of its type
    ("system", {"external_id": "erp", "name": "ERP"}),
    ("integration_user", {"external_id": "order-sync", "name": "Order sync", "status": "active"}),
    ("permission_set", {"external_id": "reader", "max_token_lifetime_seconds": 900}),
    ("assignment", {"integration_user_id": 1, "permission_set_id": 1}),
]


def _neutral(column) -> object:
    kind = type(column["type"]).__name__.upper()
    if "JSON" in kind:
        return "{}"
    if "INT" in kind or "NUMERIC" in kind or "FLOAT" in kind:
        return 0
    if "BOOL" in kind:
        return False
    if "DATE" in kind or "TIME" in kind:
        return "2026-01-01 00:00:00+00:00"
    return ""


def _upgrade_with_data(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            inspector = sa.inspect(conn)
            for table, given in ROWS:
                values = dict(given)
                for column in inspector.get_columns(table):
                    if (column["name"] not in values and not column["nullable"] and column.get("default") is None
                            and column.get("autoincrement") is not True and column["name"] != "id"):
                        values[column["name"]] = _neutral(column)
                names = ", ".join(values)
                marks = ", ".join(f":{n}" for n in values)
                conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)  # noqa: S608
        upgrade(engine)  # every later migration, over rows that refer to each other
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM assignment")).scalar_one() == 1
            rotation = conn.execute(sa.text("SELECT rotation FROM integration_user")).scalar_one()
            assert rotation in ("{}", {})
    finally:
        engine.dispose()


def test_upgrade_with_data_on_sqlite(tmp_path):
    _upgrade_with_data(f"sqlite:///{tmp_path / 'g.db'}")


@pytest.mark.postgres
def test_upgrade_with_data_on_postgres(empty_postgres_url):
    _upgrade_with_data(empty_postgres_url)
