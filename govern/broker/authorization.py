"""authorize(): authenticate the caller and decide, logging every denial. Shared by the token endpoint
and the proxy, so both refuse, name the rule and log in exactly the same way.

An allowed decision is returned, not logged: the caller logs it once the upstream status is known
(`decisions.append(request, decision, upstream_status=..., latency_ms=...)`), as `allow`, or
as `error` with the error's code when the call failed after the allow.
"""
from __future__ import annotations

import time

from govern.broker.authenticator import CallerDenied
from govern.domain.access import PROXY_ONLY_RULE, AccessDecision, AccessRequest
from govern.errors import GovernError, NotFound, access_denied
from govern.ops.observe import note_caller
from govern.ports import CallerAuthenticator, DecisionLog, PolicyDecider


class ProxyOnlyCredential(GovernError):
    """The token endpoint serves OAuth credentials only: it never hands out a stored static credential."""

    code = "proxy_only_credential"
    status = 400
    title = "This named credential is used only through the proxy"


UNKNOWN_NAMED_CREDENTIAL = "deny:unknown_named_credential"


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def record_caller_denied(decisions: DecisionLog, denied: CallerDenied, *, action: str, named_credential: str | None,
                         scopes=(), method: str | None = None, path: str | None = None,
                         resource_object: str | None = None, api_type: str | None = None,
                         started: float | None = None) -> None:
    """Record a refusal of the caller itself (suspended, or outside its IP ranges) before any policy runs."""
    decisions.append(None, None, integration_user=denied.integration_user, source_ip=denied.source_ip,
                     action=action, named_credential=named_credential, scopes_requested=list(scopes),
                     method=method, path=path, resource_object=resource_object, api_type=api_type,
                     allowed=False, outcome="deny", rules=[denied.rule],
                     latency_ms=elapsed_ms(started) if started is not None else None)


def authorize(authenticator: CallerAuthenticator, decider: PolicyDecider, decisions: DecisionLog, *, action: str,
              named_credential: str, authorization: str | None, peer_ip: str,
              forwarded_for: str | None, scopes: tuple[str, ...] = (), method: str | None = None,
              path: str | None = None, resource_object: str | None = None, fields: tuple[str, ...] = (),
              api_type: str | None = None, started: float | None = None) -> tuple[AccessRequest, AccessDecision]:
    """Raise Unauthorized (401, not logged: nobody was identified), NotFound (unknown named credential,
    logged as deny:unknown_named_credential), or AccessDenied (403, logged with its rule); return the request
    and the allowing decision."""
    started = time.perf_counter() if started is None else started
    try:
        caller = authenticator.authenticate(authorization, peer_ip, forwarded_for)
    except CallerDenied as denied:
        record_caller_denied(decisions, denied, action=action, named_credential=named_credential, scopes=scopes,
                             method=method, path=path, resource_object=resource_object, api_type=api_type,
                             started=started)
        raise
    note_caller(caller.integration_user)  # the source system joins the operation's log lines (govern.ops)
    request = AccessRequest(caller=caller, action=action, named_credential=named_credential, scopes=scopes,
                            method=method, path=path, resource_object=resource_object, fields=tuple(fields),
                            api_type=api_type)
    try:
        decision = decider.decide(request)
    except NotFound:  # an identified caller asking for a named credential that does not exist
        decisions.append(request, None, rules=[UNKNOWN_NAMED_CREDENTIAL], outcome="deny",
                         latency_ms=elapsed_ms(started))
        raise
    if not decision.allowed:
        decisions.append(request, decision, latency_ms=elapsed_ms(started))
        if decision.rules[0] == PROXY_ONLY_RULE:
            raise ProxyOnlyCredential(
                f"named credential {named_credential!r} holds a static secret, which never leaves govern; call "
                f"/api/v1/named-credentials/{named_credential}/proxy/... (govern.client.GovernProxySession)",
                extra={"rule": PROXY_ONLY_RULE, "proxy": f"/api/v1/named-credentials/{named_credential}/proxy/"})
        raise access_denied(f"access denied: {decision.reason}", rule=decision.rules[0],
                            extra={"rules": list(decision.rules)})
    return request, decision
