"""The use case behind `POST /api/v1/named-credentials/{name}/token`: authenticate, decide, log, and
hand out the upstream access token (never a refresh token or a client secret).

Every decision is logged, allow and deny alike, with its deciding rules, the scopes asked and granted,
the source IP, the correlation id (bound by the HTTP edge), the latency and the upstream status
(`UpstreamToken.extra["upstream_status"]` when the token source made an upstream call; none on a
cache hit).

A caller whose upstream answered 401 sends the refused token back as `rejected_token`. If it is still the
token govern holds, govern refreshes once (single flight: the comparison is repeated under the lock, so
concurrent reports across processes cause one upstream call); if govern already holds another one, that
one is returned without an upstream call. So a caller can only
make govern replace the token govern itself handed out, never make it call the upstream at will.
"""
from __future__ import annotations

import time

from govern.broker.authorization import authorize, elapsed_ms
from govern.errors import GovernError
from govern.ports import CallerAuthenticator, Clock, DecisionLog, PolicyDecider, UpstreamTokenSource


class UpstreamTokensNotConfigured(GovernError):
    code = "upstream_tokens_unavailable"
    status = 503
    title = "govern cannot obtain upstream tokens"


def upstream_token(*, authenticator: CallerAuthenticator, decider: PolicyDecider, decisions: DecisionLog,
                   source: UpstreamTokenSource | None, clock: Clock, named_credential: str, authorization: str | None,
                   peer_ip: str, forwarded_for: str | None, scopes: tuple[str, ...], started: float | None = None,
                   rejected_token: str | None = None) -> dict:
    """`source`: None when this instance has no upstream token source (answered 503, on record)."""
    started = time.perf_counter() if started is None else started
    request, decision = authorize(authenticator, decider, decisions, action="token", named_credential=named_credential,
                                  authorization=authorization, peer_ip=peer_ip, forwarded_for=forwarded_for,
                                  scopes=scopes, started=started)
    if source is None:
        decisions.append(request, decision, latency_ms=elapsed_ms(started), error_code=UpstreamTokensNotConfigured.code)
        raise UpstreamTokensNotConfigured("no upstream token source is configured on this govern instance")
    try:
        # The comparison with the held token is made by the token source, again under its single-flight
        # lock: compared here, outside it, every report that raced the first refresh refreshed once more.
        token = source.get_token(named_credential, decision.principal, decision.scopes_granted,
                                 rejected=rejected_token or None)
    except Exception as exc:  # every outcome is on record (as an error), then the error goes on to the edge
        status = exc.status if isinstance(exc, GovernError) else 500
        code = exc.code if isinstance(exc, GovernError) else "internal_error"
        decisions.append(request, decision, upstream_status=status, error_code=code, latency_ms=elapsed_ms(started))
        raise
    decisions.append(request, decision, upstream_status=token.extra.get("upstream_status"),
                     latency_ms=elapsed_ms(started))
    expires_in = None
    if token.expires_at is not None:
        expires_in = max(0, int((token.expires_at - clock.now()).total_seconds()))
    if decision.max_token_lifetime_seconds is not None:
        # The caller re-asks within its permission set's lifetime, even if the upstream token lives longer.
        expires_in = min(expires_in if expires_in is not None else decision.max_token_lifetime_seconds,
                         decision.max_token_lifetime_seconds)
    return {"access_token": token.access_token.reveal(), "token_type": token.token_type or "Bearer",
            "expires_in": expires_in, "scope": " ".join(token.scopes or decision.scopes_granted)}
