"""Client authentication at the token endpoint (RFC 6749 section 2.3.1 client_secret_basic, RFC 7523
section 2.2 private_key_jwt), hardened against guessing and CPU exhaustion.

One attempt, in this order, so that the expensive step comes last:
1. Rate limits (govern.ratelimit), before anything is read or hashed: failures per (client id, address)
   and per address; once the looser per-client-id failure limit is exhausted, only an address with no
   failure for that client in the window gets a check at all, so a guesser costs no hash while the
   client, from any other allowed address, still gets in.
2. The client is loaded; the source address must lie in its ranges (before the secret or signature).
3. Only then is the secret hashed (scrypt) or the assertion's signature verified.

Every refusal is the same invalid_client answer (govern.api.oauth_server), whatever the reason: an
unknown client id, a suspended user, an address outside the ranges, a wrong secret. A client secret is
hashed, with the client's hash or a dummy of the same cost, exactly when the source address lies inside
some active integration user's ranges: how long an answer takes depends on the address alone, so it
cannot tell which client ids exist.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from govern.domain.access_rules import ip_in_ranges
from govern.domain.client_auth import spend_dummy_hash
from govern.ratelimit import RateLimits

log = logging.getLogger("govern.oauth")

REFUSED = "client authentication failed"


class SlowDown(OAuth2Error):
    """429 in the RFC 6749 section 5.2 shape. `slow_down` is the token endpoint error registered by
    RFC 8628 section 3.5 for "polling too fast"; here: too many attempts, wait Retry-After seconds."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__(description="too many attempts; retry after the number of seconds in Retry-After")
        self.retry_after = max(1, int(retry_after))

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class ClientAuthGuard:
    """Wraps one client-authentication attempt with the failure limits and the address-first order."""

    def __init__(self, limits: RateLimits, active_ranges: Callable[[], tuple[str, ...]]):
        self._limits = limits
        self._active_ranges = active_ranges  # the union of every active user's CIDRs

    def before_attempt(self, client_id: str, address: str) -> None:
        """Raise SlowDown, before any work, when this attempt is over a limit."""
        limits = self._limits
        for verdict in (limits.test("client_failures_pair", client_id, address),
                        limits.test("client_failures_address", address)):
            if not verdict.allowed:
                raise SlowDown(verdict.retry_after)
        client_wide = limits.test("client_failures_client", client_id)
        if not client_wide.allowed and not limits.untouched("client_failures_pair", client_id, address):
            raise SlowDown(client_wide.retry_after)

    def failed(self, client_id: str, address: str, reason: str) -> InvalidClientError:
        limits = self._limits
        limits.hit("client_failures_pair", client_id, address)
        limits.hit("client_failures_address", address)
        limits.hit("client_failures_client", client_id)
        # The reason stays in the log (for the operator); the answer is the same for every reason.
        log.info("client authentication refused", extra={"reason": reason, "source_ip": address})
        return InvalidClientError(description=REFUSED, status_code=401)

    def address_may_hash(self, address: str) -> bool:
        return ip_in_ranges(address, self._active_ranges())

    def authenticate_secret(self, client_id: str, secret: str, address: str, load_client):
        """client_secret_basic: the client, or raises InvalidClientError / SlowDown."""
        self.before_attempt(client_id, address)
        client = load_client(client_id)
        if client is None or not ip_in_ranges(address, client.cidrs):
            if self.address_may_hash(address):
                spend_dummy_hash(secret)
            reason = "unknown or inactive client" if client is None else "source address outside ranges"
            raise self.failed(client_id, address, reason)
        if not client.check_client_secret(secret):
            raise self.failed(client_id, address, "wrong client secret")
        return client


def claimed_client_id(headers) -> str | None:
    """The client id a Basic Authorization header names (unverified), for the early refusal; None for a header
    that is not readable Basic credentials (authlib raises on `Basic ` and on bytes that are not UTF-8: the
    edge answers those 401 itself)."""
    try:
        client_id, _ = extract_basic_authorization(headers)
    except (ValueError, TypeError):  # UnicodeDecodeError and binascii.Error are ValueErrors
        return None
    return client_id or None


def already_limited(limits: RateLimits, client_id: str | None, address: str):
    """A refusal this process already knows of for this address (or client id and address): answered
    before the request is parsed further, with no call to the rate-limit store and no hash."""
    known = limits.known_blocked("client_failures_address", address)
    if known is None and client_id:
        known = limits.known_blocked("client_failures_pair", client_id, address)
    return known


def authenticate_client_secret_basic(guard: ClientAuthGuard, source_ip: Callable[[], str]):
    """An authlib client-auth method (query_client, request) -> client, replacing authlib's own."""

    def authenticate(query_client, request):
        client_id, secret = extract_basic_authorization(request.headers)
        if not client_id or not secret:
            return None
        client = guard.authenticate_secret(client_id, secret, source_ip(), query_client)
        if not client.check_endpoint_auth_method("client_secret_basic", "token"):
            raise guard.failed(client_id, source_ip(), "client registered for another method")
        return client

    return authenticate
