"""Who is calling, what they ask for, and what was decided. Shared by the broker, the proxy and the audit."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from govern.domain.secret import Secret


@dataclass(frozen=True)
class Caller:
    """An authenticated integration user, as established from a govern access token."""

    integration_user: str
    scopes: tuple[str, ...]
    source_ip: str
    token_id: str | None = None
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class AccessRequest:
    caller: Caller
    action: str  # "token" | "proxy"
    named_credential: str
    scopes: tuple[str, ...] = ()
    method: str | None = None
    path: str | None = None
    resource_object: str | None = None
    fields: tuple[str, ...] = ()
    api_type: str | None = None


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    rules: tuple[str, ...]  # the deciding rules: permission sets that permitted, or the rule that denied
    reason: str = ""
    scopes_granted: tuple[str, ...] = ()
    principal: str | None = None  # the upstream principal the caller resolves to
    max_token_lifetime_seconds: int | None = None
    allow_budget_overdraft: bool = False


@dataclass(frozen=True)
class UpstreamToken:
    access_token: Secret
    token_type: str
    expires_at: dt.datetime | None
    scopes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


# The rule that refuses a token for a static credential (basic, API key, custom header): proxy only.
PROXY_ONLY_RULE = "deny:static_credential_proxy_only"
