"""Offboarding an integration user (issue #21, docs/offboarding.md): what `govern offboard USER` does, item by item.

Pure values: the plan (one `Item` per thing govern would revoke, disable or delete), each item's outcome, and the
retry schedule for a revocation the provider could not take (RFC 7009 section 2.2.1: a 503 means "try later").
No token value is ever part of an item: an item names the credential, the principal and the kind of token.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

# What an item does.
REVOKE = "revoke"  # an RFC 7009 call to the credential's revocation endpoint
DELETE = "delete"  # govern forgets what it holds (the stored refresh token, a cached access token)
DISABLE = "disable"  # a principal is marked disconnected
RETIRE = "retire"  # the integration user's status becomes retired

# Outcomes. `planned` in a dry run; `skipped` when there is nothing govern can do (no revocation endpoint).
PLANNED, DONE, FAILED, SKIPPED = "planned", "done", "failed", "skipped"

RETRY_ATTEMPTS = 4  # one call and three retries
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 8.0


@dataclass(frozen=True)
class Item:
    action: str  # revoke | delete | disable | retire
    what: str  # refresh_token | access_token | principal | integration_user
    credential: str | None = None
    principal: str | None = None
    named_credential: str | None = None
    outcome: str = PLANNED
    detail: str = ""  # never a secret: status codes, error codes, counts
    attempts: int = 0
    status: int | None = None  # the provider's last HTTP status, for a revocation

    def finished(self, outcome: str, detail: str = "", attempts: int = 0, status: int | None = None) -> Item:
        return replace(self, outcome=outcome, detail=detail, attempts=attempts, status=status)

    def describe(self) -> str:
        where = " ".join(p for p in (f"credential {self.credential}" if self.credential else "",
                                     f"principal {self.principal}" if self.principal else "",
                                     f"via {self.named_credential}" if self.named_credential else "") if p)
        return f"{self.action} {self.what}" + (f" ({where})" if where else "")

    def as_dict(self) -> dict:
        return {"action": self.action, "what": self.what, "credential": self.credential, "principal": self.principal,
                "named_credential": self.named_credential, "outcome": self.outcome, "detail": self.detail,
                "attempts": self.attempts, "status": self.status}


@dataclass(frozen=True)
class Report:
    user: str
    committed: bool
    items: tuple[Item, ...]

    @property
    def failed(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.outcome == FAILED)

    def as_dict(self) -> dict:
        return {"integration_user": self.user, "committed": self.committed, "failed": len(self.failed),
                "items": [i.as_dict() for i in self.items]}


def retry_delays(attempts: int = RETRY_ATTEMPTS, base: float = RETRY_BASE_SECONDS,
                 cap: float = RETRY_MAX_SECONDS) -> list[float]:
    """The waits between attempts: exponential backoff, `attempts - 1` of them."""
    return [min(cap, base * 2 ** n) for n in range(max(0, attempts - 1))]


# --- What offboarding reads of the landscape (govern.store.offboarding builds these) --------------------------

@dataclass(frozen=True)
class OffboardCredential:
    external_id: str
    protocol: str
    token_url: str | None
    client_id: str | None
    client_auth_method: str | None
    revocation_url: str | None
    revocation_auth_method: str | None
    scopes: tuple[str, ...]
    audience: str | None
    resource: tuple[str, ...]
    token_params: dict
    leeway_seconds: float | None
    rotation: dict


@dataclass(frozen=True)
class OffboardPrincipal:
    id: int
    name: str
    subject: str | None
    connected: bool
    named_credentials: tuple[str, ...]
    credential: OffboardCredential


@dataclass(frozen=True)
class OffboardUser:
    id: int
    external_id: str
    status: str
    allowed_scopes: tuple[str, ...]
    principals: tuple[OffboardPrincipal, ...]
