"""OAuth 2.0 Token Exchange (RFC 8693) at `POST /oauth/token`: a standard door to the upstream token endpoint.

A caller exchanges its govern access token (the `subject_token`) for an upstream access token of one named
credential, which it names by `audience` (the named credential's id) or by `resource` (its absolute govern URL,
`<GOVERN_PUBLIC_URL>/api/v1/named-credentials/<id>`, RFC 8707). It is the same use case as
`POST /api/v1/named-credentials/{name}/token` (govern.broker.token_service.upstream_token): the same
authentication, decision, narrowing of scopes, decision log and upstream token source; only the request and the
answer are RFC 8693's (section 2.1 and 2.2.1) and the errors RFC 8693 section 2.2.2 / RFC 6749 section 5.2's:

- `invalid_request`: a missing or repeated parameter, an unsupported token type, an actor token, or a
  subject_token that is not a valid govern access token for this caller now (section 2.2.2: "if either the
  subject_token or actor_token are invalid for any reason, or are unacceptable based on policy");
- `invalid_target`: no such named credential, or govern will not issue a token for it (policy, proxy-only
  credential, a principal to reconnect);
- `invalid_scope`: none of the requested scopes can be granted.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from govern.broker.authenticator import CallerDenied
from govern.broker.authorization import ProxyOnlyCredential
from govern.broker.token_service import upstream_token
from govern.domain.access_rules import parse_scopes
from govern.errors import AccessDenied, GovernError, NotFound, Unauthorized
from govern.ports import CallerAuthenticator, Clock, DecisionLog, PolicyDecider, UpstreamTokenSource

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a token type URN (RFC 8693 section 3)
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - govern access tokens are JWTs (RFC 9068)
NAMED_CREDENTIALS_PATH = "/api/v1/named-credentials/"
# RFC 6749 section 3.2: parameters "MUST NOT be included more than once"; RFC 8693 allows several resource and
# audience values (govern serves one named credential per exchange, so it refuses more than one target).
SINGLE = ("grant_type", "subject_token", "subject_token_type", "requested_token_type", "scope")


class TokenExchangeError(Exception):
    """An RFC 6749 section 5.2 error: `error`, a description safe to show, and the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class ExchangeRequest:
    subject_token: str
    named_credential: str
    scopes: tuple[str, ...]


def parse_exchange(form: Mapping[str, list[str]], public_url: str) -> ExchangeRequest:
    """RFC 8693 section 2.1 from the form's fields (each name to all its values)."""
    for name in SINGLE:
        if len(form.get(name, ())) > 1:
            raise TokenExchangeError("invalid_request", f"{name} is given more than once")

    def one(name: str) -> str:
        values = form.get(name) or [""]
        return values[0]

    subject_token = one("subject_token")
    if not subject_token:
        raise TokenExchangeError("invalid_request", "subject_token is required (your govern access token)")
    if one("subject_token_type") not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
        raise TokenExchangeError("invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
    if form.get("actor_token") or form.get("actor_token_type"):
        raise TokenExchangeError("invalid_request", "actor_token (delegation) is not supported")
    requested = one("requested_token_type")
    if requested and requested != ACCESS_TOKEN_TYPE:
        raise TokenExchangeError("invalid_request", f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
    targets = {v for v in form.get("audience", ()) if v}
    prefix = public_url.rstrip("/") + NAMED_CREDENTIALS_PATH
    for resource in form.get("resource", ()):
        name = resource[len(prefix):].rstrip("/") if resource.startswith(prefix) else ""
        if not name or "/" in name:
            raise TokenExchangeError("invalid_target", f"resource must be a named credential's URL: {prefix}<name>")
        targets.add(name)
    if not targets:
        raise TokenExchangeError("invalid_request", "name the named credential in audience (its id) or resource")
    if len(targets) > 1:
        raise TokenExchangeError("invalid_target", "one named credential per exchange")
    return ExchangeRequest(subject_token, targets.pop(), parse_scopes(one("scope") or None))


def exchange(request: ExchangeRequest, *, authenticator: CallerAuthenticator, decider: PolicyDecider,
             decision_log: DecisionLog, upstream_tokens: UpstreamTokenSource | None, clock: Clock, peer_ip: str,
             forwarded_for: str | None) -> dict:
    """The RFC 8693 section 2.2.1 answer. A refusal goes on as the upstream token endpoint's error (Unauthorized,
    NotFound, AccessDenied, ...), so that the caller's observation (govern.ops.observe.operation, at the HTTP
    edge) counts it as that endpoint does; `refusals` turns it into TokenExchangeError around both."""
    started = time.perf_counter()
    token = upstream_token(authenticator=authenticator, decider=decider, decisions=decision_log, source=upstream_tokens,
                           clock=clock, named_credential=request.named_credential,
                           authorization=f"Bearer {request.subject_token}", peer_ip=peer_ip,
                           forwarded_for=forwarded_for, scopes=request.scopes, started=started)
    answer = {"access_token": token["access_token"], "issued_token_type": ACCESS_TOKEN_TYPE,
              "token_type": token["token_type"], "scope": token["scope"]}
    if token.get("expires_in") is not None:
        answer["expires_in"] = token["expires_in"]
    return answer


@contextmanager
def refusals(name: str) -> Iterator[None]:
    """RFC 8693 section 2.2.2's errors for the refusals of `exchange` (TokenExchangeError); govern's own failures
    (the upstream, the secret store, the decision log) go on as GovernError, as at the upstream token endpoint."""
    try:
        yield
    except Unauthorized:
        raise TokenExchangeError("invalid_request", "the subject_token is not a valid govern access token") from None
    except NotFound:
        raise TokenExchangeError("invalid_target", f"no named credential {name!r} can be named here") from None
    except ProxyOnlyCredential:
        raise TokenExchangeError("invalid_target", f"named credential {name!r} holds a static secret and is used "
                                                   "only through the proxy") from None
    except CallerDenied as denied:  # suspended, or outside its ranges: the subject token is unacceptable by policy
        raise TokenExchangeError("invalid_request", f"the subject_token's user may not act now: {denied.detail}") \
            from None
    except AccessDenied as denied:
        if denied.rule in ("deny:no_grantable_scope", "deny:scope_outside_grant"):
            raise TokenExchangeError("invalid_scope", denied.detail) from None
        raise TokenExchangeError("invalid_target", denied.detail) from None
    except GovernError as error:
        if error.status < 500 and error.status != 429:
            error_code = "invalid_target" if error.status == 409 else "invalid_request"
            raise TokenExchangeError(error_code, error.detail) from None
        raise
