"""The upstream revocation queue (issue #21, docs/offboarding.md): what govern must revoke at a provider (RFC 7009)
when an integration user is retired or removed, a principal is disconnected, or a refresh token is replaced.

Pure values. A request names the credential, the principal, the kind of token and where govern keeps it (the
vault secret reference, or the named credentials and scopes under which access tokens are cached); never a
token value. The worker takes due items, one attempt per pass, and backs off between passes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Why an item was queued.
RETIRED = "user_retired"  # `govern apply` set the integration user's status to retired
USER_REMOVED = "user_removed"  # `govern apply --prune` removed the integration user
PRINCIPAL_REMOVED = "principal_removed"  # `govern apply` dropped the principal from its credential
DISCONNECTED = "disconnected"  # `govern credentials disconnect`, DELETE .../connection
REPLACED = "replaced"  # a new connect of the principal stored a new refresh token
CREDENTIAL_REMOVED = "credential_removed"  # `govern apply --prune` removed the credential

# An item's state: pending (due at next_attempt_at), then done, skipped (nothing to revoke) or failed.
PENDING, DONE, SKIPPED, FAILED = "pending", "done", "skipped", "failed"
FINISHED = (DONE, SKIPPED, FAILED)

REFRESH_TOKEN, ACCESS_TOKEN = "refresh_token", "access_token"

QUEUE_ATTEMPTS = 6  # attempts in all, one per worker pass that finds the item due
QUEUE_BASE_SECONDS = 60.0
QUEUE_MAX_SECONDS = 3600.0
CLAIM_LEASE_SECONDS = 300.0  # a claimed item is not due again for this long (a worker that died mid-item)


def next_delay(attempts: int, base: float = QUEUE_BASE_SECONDS, cap: float = QUEUE_MAX_SECONDS) -> float:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4, 8, 16 minutes, at most an hour."""
    return min(cap, base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class RevocationRequest:
    """What to revoke. `location` is where the token lives, never the token:
    refresh_token: {"secret_ref": name, "path": vault path, "version": n or None (the newest), "forget": bool};
    access_token: {"named_credentials": [...], "scopes": [...]} (govern's token-cache keys are derived from them).
    For a removed credential also {"credential": its settings (no secret), "credential_secrets": [secret reference
    names the queue deletes once the credential's last item is finished]}."""

    credential: str
    principal: str
    token_type: str
    reason: str
    location: dict[str, Any] = field(default_factory=dict)
    integration_user: str | None = None

    def describe(self) -> str:
        return f"revoke {self.token_type} (credential {self.credential} principal {self.principal})"


@dataclass(frozen=True)
class QueuedRevocation:
    id: int
    credential: str
    principal: str
    token_type: str
    reason: str
    location: dict[str, Any]
    integration_user: str | None
    status: str
    attempts: int
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime | None = None
    detail: str = ""
    last_status: int | None = None

    def describe(self) -> str:
        return f"revoke {self.token_type} (credential {self.credential} principal {self.principal})"

    def as_dict(self) -> dict[str, Any]:
        where = {k: v for k, v in self.location.items() if k != "path"}
        return {"id": self.id, "credential": self.credential, "principal": self.principal,
                "token_type": self.token_type, "reason": self.reason, "integration_user": self.integration_user,
                "status": self.status, "attempts": self.attempts,
                "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at and self.status == PENDING
                else None,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()
                if self.updated_at else None, "detail": self.detail, "last_status": self.last_status, "location": where}
