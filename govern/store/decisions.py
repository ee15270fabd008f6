"""Reading the decision log for people: filtered, paged, newest first (the API, `govern log show`)."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from govern.store.db import table_of
from govern.store.tables import Decision

FIELDS = ("id", "at", "correlation_id", "integration_user", "action", "named_credential", "principal", "method",
          "path", "resource_object", "api_type", "scopes_requested", "scopes_granted", "source_ip", "allowed",
          "outcome", "error_code", "rules", "upstream_status", "latency_ms", "key_id", "hash")


def query_decisions(session, *, outcome: str | None = None, integration_user: str | None = None,
                    named_credential: str | None = None, action: str | None = None,
                    correlation_id: str | None = None, after: int | None = None, limit: int = 50,
                    offset: int = 0, newest_first: bool = True) -> tuple[int, list[dict]]:
    table = table_of(Decision)
    where = []
    for column, value in (("outcome", outcome), ("integration_user", integration_user),
                          ("named_credential", named_credential), ("action", action),
                          ("correlation_id", correlation_id)):
        if value:
            where.append(table.c[column] == value)
    if after is not None:
        where.append(table.c.id > after)
    total = session.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
    order = table.c.id.desc() if newest_first else table.c.id
    rows = session.execute(sa.select(*(table.c[f] for f in FIELDS)).where(*where).order_by(order)
                           .limit(limit).offset(offset)).mappings().all()
    return total, [_item(r) for r in rows]


def _item(row) -> dict:
    item = dict(row)
    at = item["at"]
    if isinstance(at, dt.datetime):
        item["at"] = (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).isoformat()
    return item
