"""The names people type on the command line (entities' external ids), read for shell completion.

SQLAlchemy Core on the table and column names only: building the SQLModel tables (govern.store.tables)
would add about 0.3 s to every press of Tab. tests/test_cli_completion.py applies a landscape and completes
each kind, so a table renamed there and not here fails that test.
"""
from __future__ import annotations

import sqlalchemy as sa

TABLES = {
    "system": "system",
    "credential": "external_credential",
    "named_credential": "named_credential",
    "integration_user": "integration_user",
    "secret": "secret_ref",
}


def external_ids(engine: sa.Engine, kind: str, prefix: str = "", limit: int = 200) -> list[str]:
    """The external ids of one kind of entity that start with `prefix`, sorted, at most `limit`."""
    table = sa.table(TABLES[kind], sa.column("external_id"))
    query = (sa.select(table.c.external_id).where(table.c.external_id.startswith(prefix, autoescape=True))
             .order_by(table.c.external_id).limit(limit))
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def principal_names(engine: sa.Engine, credential: str | None, prefix: str = "", limit: int = 200) -> list[str]:
    """The principal names of `credential` (of every credential when None) that start with `prefix`."""
    principal = sa.table("principal", sa.column("name"), sa.column("credential_id"))
    owner = sa.table("external_credential", sa.column("id"), sa.column("external_id"))
    query = (sa.select(principal.c.name).distinct().join(owner, owner.c.id == principal.c.credential_id)
             .where(principal.c.name.startswith(prefix, autoescape=True)).order_by(principal.c.name).limit(limit))
    if credential:
        query = query.where(owner.c.external_id == credential)
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]
