"""The proxy's queues: calls held during a maintenance window, and calls that kept failing (dead letters).

Rows hold what is needed to replay the call: method, path, query, allowlisted request headers, body,
caller (with the source address and token scopes it was authenticated with), upstream principal,
correlation id and Idempotency-Key. Never a credential or a token: the credential is injected again at
delivery time, after the call has been decided again.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from govern.store.tables import utcnow


class QueuedCall(SQLModel, table=True):
    __tablename__ = "queued_call"
    id: Optional[int] = Field(default=None, primary_key=True)
    named_credential: str = Field(max_length=200, index=True)
    system: str = Field(max_length=200, index=True)
    caller: str = Field(max_length=200, index=True)
    principal: Optional[str] = Field(default=None, max_length=200)
    method: str = Field(max_length=10)
    path: str = Field(max_length=2000)
    query: str = Field(default="", max_length=4000)
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    body: bytes = Field(default=b"", sa_column=sa.Column(sa.LargeBinary, nullable=False))
    correlation_id: str = Field(max_length=128, index=True)
    idempotency_key: Optional[str] = Field(default=None, max_length=255)
    # The caller as authenticated when the call arrived: the call is decided again at delivery.
    source_ip: Optional[str] = Field(default=None, max_length=64)
    scopes: Optional[list[str]] = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    status: str = Field(default="queued", max_length=20, index=True)  # queued | delivered | dead
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(
        sa.DateTime(timezone=True), nullable=False, index=True))
    response_status: Optional[int] = None
    last_error: Optional[str] = Field(default=None, max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    delivered_at: Optional[dt.datetime] = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letter"
    id: Optional[int] = Field(default=None, primary_key=True)
    queued_call_id: Optional[int] = Field(default=None, index=True)
    named_credential: str = Field(max_length=200, index=True)
    system: str = Field(max_length=200, index=True)
    caller: str = Field(max_length=200)
    principal: Optional[str] = Field(default=None, max_length=200)
    method: str = Field(max_length=10)
    path: str = Field(max_length=2000)
    query: str = Field(default="", max_length=4000)
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    body: bytes = Field(default=b"", sa_column=sa.Column(sa.LargeBinary, nullable=False))
    correlation_id: str = Field(max_length=128, index=True)
    idempotency_key: Optional[str] = Field(default=None, max_length=255)
    # The caller as authenticated when the call arrived: the call is decided again at delivery.
    source_ip: Optional[str] = Field(default=None, max_length=64)
    scopes: Optional[list[str]] = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    attempts: int = 0
    last_status: Optional[int] = None
    reason: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
