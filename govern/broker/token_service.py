"""The use case behind `POST /api/v1/named-credentials/{name}/token`: authenticate, decide, log, and
hand out the upstream access token (never a refresh token or a client secret).

Every decision is logged, allow and deny alike, with its deciding rules, the scopes asked and granted,
the source IP, the correlation id (bound by the HTTP edge), the latency and the upstream status
(`UpstreamToken.extra["upstream_status"]` when the token source made an upstream call; none on a
cache hit).
"""
from __future__ import annotations

import time

from govern.broker.authenticator import CallerDenied
from govern.domain.access import AccessRequest
from govern.errors import AccessDenied, GovernError


class UpstreamTokensNotConfigured(GovernError):
    code = "upstream_tokens_unavailable"
    status = 503
    title = "govern cannot obtain upstream tokens"


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def upstream_token(services, *, named_credential: str, authorization: str | None, peer_ip: str,
                   forwarded_for: str | None, scopes: tuple[str, ...], started: float | None = None) -> dict:
    started = time.perf_counter() if started is None else started
    decisions = services.decision_log
    try:
        caller = services.authenticator.authenticate(authorization, peer_ip, forwarded_for)
    except CallerDenied as denied:
        decisions.append(None, None, integration_user=denied.integration_user, source_ip=denied.source_ip,
                         action="token", named_credential=named_credential, scopes_requested=list(scopes),
                         allowed=False, rules=[denied.rule], latency_ms=_ms(started))
        raise
    request = AccessRequest(caller=caller, action="token", named_credential=named_credential, scopes=scopes)
    decision = services.decider.decide(request)
    if not decision.allowed:
        decisions.append(request, decision, latency_ms=_ms(started))
        raise AccessDenied(f"access denied: {decision.reason}", rule=decision.rules[0],
                           extra={"rules": list(decision.rules)})
    source = services.upstream_tokens
    if source is None:
        decisions.append(request, decision, latency_ms=_ms(started))
        raise UpstreamTokensNotConfigured("no upstream token source is configured on this govern instance")
    try:
        token = source.get_token(named_credential, decision.principal, decision.scopes_granted)
    except GovernError as exc:
        decisions.append(request, decision, upstream_status=exc.status, latency_ms=_ms(started))
        raise
    decisions.append(request, decision, upstream_status=token.extra.get("upstream_status"),
                     latency_ms=_ms(started))
    expires_in = None
    if token.expires_at is not None:
        expires_in = max(0, int((token.expires_at - services.clock.now()).total_seconds()))
    if decision.max_token_lifetime_seconds is not None:
        # The caller re-asks within its permission set's lifetime, even if the upstream token lives longer.
        expires_in = min(expires_in if expires_in is not None else decision.max_token_lifetime_seconds,
                         decision.max_token_lifetime_seconds)
    return {"access_token": token.access_token.reveal(), "token_type": token.token_type or "Bearer",
            "expires_in": expires_in, "scope": " ".join(token.scopes or decision.scopes_granted)}
