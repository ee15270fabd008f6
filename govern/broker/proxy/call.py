"""One proxied call: what comes in, what goes out, and the steps the direct call (service.py) and a queued
delivery (queue.py) share."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from govern.broker.proxy.targets import Target
from govern.domain.access import AccessDecision, Caller
from govern.errors import access_denied

PROXY_PREFIX = "/api/v1/named-credentials"


@dataclass(frozen=True)
class ProxyCall:
    named_credential: str
    method: str
    raw_path: str  # the remainder after /proxy/, still percent-encoded as received
    query: str
    headers: dict[str, str]  # already allowlisted
    body: bytes
    caller: Caller
    correlation_id: str
    idempotency_key: str | None = None


@dataclass
class ProxyResult:
    status: int
    headers: dict[str, str]
    body: bytes | Iterable[bytes]
    replayed: bool = False


@dataclass
class UpstreamOutcome:
    """What the decision record says about the upstream's side of the call."""

    upstream_status: int | None = None


def raise_if_denied(decision: AccessDecision) -> None:
    if not decision.allowed:
        rule = decision.rules[0] if decision.rules else "deny:default"
        raise access_denied(decision.reason or "no permission set allows this call", rule=rule)


def default_principal(target: Target) -> str | None:
    if len(target.principals) == 1:
        return next(iter(target.principals))
    return "default" if "default" in target.principals else None
