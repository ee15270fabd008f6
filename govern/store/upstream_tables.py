"""Tables of the upstream token broker: the refresh journal and the single-flight lock rows.

Neither table ever holds a token in clear. `upstream_token_lock.sealed_token` holds a cached upstream
access token only when it is sealed with the shared cache cipher (govern.secrets.cipher.CacheCipher).
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from govern.store.tables import utcnow


class RefreshJournal(SQLModel, table=True):
    """One refresh-token grant attempt, written BEFORE the upstream is called.

    state: started -> succeeded | failed | in_doubt. An attempt left `started` by a dead worker is
    in doubt too: the upstream may have rotated the refresh token without govern learning the new one.
    """

    __tablename__ = "refresh_journal"
    id: Optional[int] = Field(default=None, primary_key=True)
    attempt_id: str = Field(max_length=64, unique=True)
    credential: str = Field(max_length=200, index=True)
    principal: str = Field(max_length=200, index=True)
    state: str = Field(default="started", max_length=20, index=True)
    old_version: Optional[int] = None  # the refresh-token version sent to the upstream
    new_version: Optional[int] = None  # the version stored after a rotation
    worker: Optional[str] = Field(default=None, max_length=200)
    error: Optional[str] = Field(default=None, max_length=200)  # an error code, never a message from upstream
    started_at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    finished_at: dt.datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))


class UpstreamTokenLock(SQLModel, table=True):
    """One row per (named credential, principal, scopes): `SELECT ... FOR UPDATE` on it single-flights refreshes
    across processes that share PostgreSQL but no Redis."""

    __tablename__ = "upstream_token_lock"
    key: str = Field(primary_key=True, max_length=300)
    fence: int = 0
    sealed_token: Optional[bytes] = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    expires_at: dt.datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))
