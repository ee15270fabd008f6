"""Small shared pieces of the rotation runner: item outcomes, redacted error text, a worker's id."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from govern.errors import GovernError
from govern.logs import redact_text


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
