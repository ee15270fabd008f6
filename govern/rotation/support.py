"""Small shared pieces of the rotation runner: item outcomes, redacted error text, the system a secret touches."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel, col, select

from govern.errors import GovernError
from govern.logs import redact_text
from govern.rotation.rotators import SecretRefView
from govern.store.db import row_id
from govern.store.tables import ExternalCredential, SecretRef, System


class LostLease(Exception):
    """Another worker took the run over (our lease expired); stop touching it."""


def describe_error(exc: BaseException) -> str:
    """A redacted, secret-free description: govern errors carry curated text; others only their type."""
    if isinstance(exc, GovernError):
        return redact_text(f"{exc.code}: {exc.detail}")[:500]
    sqlstate = getattr(exc, "sqlstate", None)
    return type(exc).__name__ + (f" (sqlstate {sqlstate})" if sqlstate else "")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def view(ref: SecretRef) -> SecretRefView:
    return SecretRefView(id=row_id(ref), external_id=ref.external_id, owner_kind=ref.owner_kind, owner=ref.owner,
                         principal=ref.principal, field=ref.field, path=ref.path,
                         current_version=ref.current_version, rotator=ref.rotator or "",
                         overlap_seconds=ref.overlap_seconds)


def system_key(session, ref: SecretRef) -> str:
    """The system a secret's rotation touches: a credential's System, otherwise `owner_kind:owner`."""
    if ref.owner_kind == "credential":
        row = session.execute(select(col(System.external_id))
                              .join(ExternalCredential, col(ExternalCredential.system_id) == col(System.id))
                              .where(ExternalCredential.external_id == ref.owner)).scalar_one_or_none()
        if row:
            return f"system:{row}"
    return f"{ref.owner_kind}:{ref.owner}"


@dataclass
class Outcome:
    """One item of a batch report."""

    secret: str
    status: str  # finished | awaiting_confirmation | retrying | parked | skipped | failed | would_rotate | would_resume
    run_id: int | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("retrying", "parked", "failed")

    def as_dict(self) -> dict[str, Any]:
        return {"secret": self.secret, "status": self.status, "run_id": self.run_id, "detail": self.detail}


def update(model: type[SQLModel]) -> sa.Update:
    """A bulk UPDATE that leaves the session's objects alone (the runner keeps its own copies)."""
    return sa.update(model).execution_options(synchronize_session=False)
