"""The status of every secret reference (ref, store, version, set on; never a value).

Read with SQLAlchemy Core against the `secret_ref` columns it needs, not through the ORM tables, so that
`govern secrets status` runs without loading SQLModel and govern's table classes (bench/cli.py: that import
alone costs more than the whole command may take).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

_SECRET_REF = sa.table("secret_ref", sa.column("external_id"), sa.column("owner_kind"), sa.column("owner"),
                       sa.column("principal"), sa.column("field"), sa.column("store"), sa.column("current_version"),
                       sa.column("set_at", sa.DateTime(timezone=True)))


@dataclass(frozen=True)
class SecretStatus:
    ref: str
    owner_kind: str
    owner: str
    principal: str | None
    field: str
    store: str
    version: int | None
    set_at: dt.datetime | None

    def describe(self) -> str:
        when = self.set_at.strftime("%Y-%m-%d %H:%M UTC") if self.set_at else "never"
        return f"set on {when}, version {self.version}"

    def as_dict(self) -> dict:
        return {"ref": self.ref, "owner_kind": self.owner_kind, "owner": self.owner, "principal": self.principal,
                "field": self.field, "store": self.store, "version": self.version,
                "set_at": self.set_at.isoformat() if self.set_at else None, "status": self.describe()}


def secret_statuses(sessions: Callable[[], Any], *, owner_kind: str | None = None,
                    owner: str | None = None) -> list[SecretStatus]:
    """Every secret reference, by its external id; optionally those of one owner kind or owner. `sessions`
    makes a session or a connection (`engine.connect`: the CLI's, which then never makes an ORM session)."""
    query = sa.select(_SECRET_REF).order_by(_SECRET_REF.c.external_id)
    if owner_kind:
        query = query.where(_SECRET_REF.c.owner_kind == owner_kind)
    if owner:
        query = query.where(_SECRET_REF.c.owner == owner)
    with sessions() as session:
        return [_status(row) for row in session.execute(query).mappings()]


def _status(row) -> SecretStatus:
    set_at = _timestamp(row["set_at"])
    return SecretStatus(ref=row["external_id"], owner_kind=row["owner_kind"], owner=row["owner"],
                        principal=row["principal"], field=row["field"], store=row["store"],
                        version=row["current_version"], set_at=set_at)


def _timestamp(value: dt.datetime | None) -> dt.datetime | None:
    """Aware UTC (SQLite gives back naive datetimes)."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
