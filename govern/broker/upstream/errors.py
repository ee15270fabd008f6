"""Upstream failures, as members of govern's one error tree (govern.errors).

The token endpoint's error codes of RFC 6749 section 5.2 are mapped here, once: a 429 becomes
RateLimited with the upstream's Retry-After passed on, a 5xx or a timeout UpstreamUnavailable (503),
`invalid_grant` its own stable code. Messages name what failed, never a value or the upstream's body.
"""
from __future__ import annotations

from govern.errors import NotFound, UpstreamError, UpstreamUnavailable


class UpstreamTimeout(UpstreamUnavailable):
    """A request waited for another request's upstream token call (single flight) past its deadline.
    Its own code: the proxy's `upstream_timeout` (504) means the upstream itself did not answer."""

    code = "upstream_token_wait_timeout"
    title = "Timed out waiting for an upstream token"

    def __init__(self, detail: str | None = None, retry_after: int = 2, **kw):
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)


class UpstreamInvalidGrant(UpstreamError):
    """The upstream refused the grant (RFC 6749 section 5.2 `invalid_grant`): a revoked or expired refresh
    token, a rejected assertion. It needs a person: reconnect the principal or fix the key."""

    code = "upstream_invalid_grant"
    title = "The upstream refused the grant"


class UpstreamInvalidClient(UpstreamError):
    code = "upstream_invalid_client"
    title = "The upstream refused govern's client credentials"


class UpstreamNotConfigured(NotFound):
    code = "upstream_not_configured"
    title = "The named credential cannot be used for tokens"


class PrincipalNeedsReconnect(UpstreamInvalidGrant):
    """The upstream refused the principal's stored refresh token (`invalid_grant`), so govern has stopped
    calling the upstream for it: retrying cannot help, only a person reconnecting the principal can
    (`/api/v1/credentials/{credential}/principals/{principal}/connect`, or `govern secrets put ... --field
    refresh_token`). 409: the request conflicts with the principal's state, unlike a 503 it must not be
    retried by the caller. A subclass of UpstreamInvalidGrant, so code that handled that keeps working."""

    code = "principal_needs_reconnect"
    status = 409
    title = "The principal must be reconnected"
