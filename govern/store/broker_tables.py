"""Tables of the broker's authorization side: govern's own token-signing keys.

The private half of a key never sits in this table: it lives in the secret store at `secret_path`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlmodel import Field, SQLModel

from govern.store.tables import _created, _json, _ts


class SigningKey(SQLModel, table=True):
    """One key of govern's access-token key set (RFC 7517). `state`: active (signs), retiring (still
    published in the JWKS until `retire_after`, when every token it signed has expired), retired."""

    __tablename__ = "signing_key"
    id: Optional[int] = Field(default=None, primary_key=True)
    kid: str = Field(max_length=100, unique=True, index=True)
    alg: str = Field(max_length=20)
    public_jwk: dict[str, Any] = _json()
    secret_path: str = Field(max_length=500)
    state: str = Field(default="active", max_length=20, index=True)
    created_at: dt.datetime = _created()
    retire_after: dt.datetime | None = _ts()
    retired_at: dt.datetime | None = _ts()
