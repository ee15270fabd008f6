"""CallerAuthenticator: validates a govern access token (RFC 9068 JWT profile, RFC 8725 best current
practices) and re-checks the caller against the landscape at every use.

- Algorithms: an explicit allow-list (RS256). `alg: none`, HMAC algorithms (the HS/RS key-confusion
  attack, RFC 8725 section 2.1) and anything else are refused before any key is touched.
- The key comes only from govern's own key set, by `kid`; an unknown kid is refused.
- `exp` is required, `iss` and `aud` must match.
- The user must exist and be active, and the source IP must lie in the user's CIDR list. Both come from
  the landscape snapshot (govern.broker.landscape), which re-validates against the database at most
  every ~2 s: a suspension or a narrowed range takes effect within seconds, without a round trip per request.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Sequence

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from govern.bounds import json_depth_exceeds
from govern.domain.access import Caller
from govern.domain.access_rules import IPNetwork, ip_in_ranges, parse_scopes, resolve_source_ip
from govern.errors import AccessDenied, Unauthorized
from govern.ports import Clock

ALLOWED_ALGORITHMS = ("RS256",)
AUDIENCE = "govern"


class CallerDenied(AccessDenied):
    """The caller is authenticated but may not act now (suspended, or outside its IP ranges).
    Carries who and from where, for the decision log; neither is rendered in the response."""

    def __init__(self, detail: str, rule: str, *, integration_user: str, source_ip: str, scopes=()):
        super().__init__(detail, rule)
        self.integration_user = integration_user
        self.source_ip = source_ip
        self.scopes = tuple(scopes)


def check_user_may_act(user, source_ip: str) -> None:
    """The two rules re-checked at issuance and at every use: an active user, from an allowed IP."""
    if user.status != "active":
        raise CallerDenied(f"the integration user is {user.status}", f"deny:user_{user.status}",
                           integration_user=user.external_id, source_ip=source_ip)
    if not ip_in_ranges(source_ip, user.cidrs):
        raise CallerDenied("the source address is outside the integration user's IP ranges",
                           "deny:ip_outside_ranges", integration_user=user.external_id, source_ip=source_ip)


class JwtCallerAuthenticator:
    def __init__(self, keys, landscape, clock: Clock, *, issuer: str, trusted_proxies: Sequence[IPNetwork] = (),
                 audience: str = AUDIENCE, leeway_seconds: int = 0, verified_cache_size: int = 10_000):
        self._keys = keys
        self._landscape = landscape
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._trusted = tuple(trusted_proxies)
        self._leeway = leeway_seconds
        # Tokens whose signature was verified, with their claims: a repeat use skips the RSA check
        # (claims are still checked at every use). Bounded; cleared wholesale when full.
        self._verified: dict[str, dict] = {}
        self._verified_max = verified_cache_size
        self._lock = threading.Lock()

    def source_ip(self, peer_ip: str, forwarded_for: str | None) -> str:
        return resolve_source_ip(peer_ip, forwarded_for, self._trusted)

    def authenticate(self, authorization: str | None, peer_ip: str, forwarded_for: str | None) -> Caller:
        token = _bearer(authorization)
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify_signature(token)
            with self._lock:
                if len(self._verified) >= self._verified_max:
                    self._verified.clear()
                self._verified[token] = claims
        expires_at = self._check_claims(claims)
        source_ip = self.source_ip(peer_ip, forwarded_for)
        user = self._landscape.current().user(claims["sub"])  # raises a stored row's error if it does not parse
        if user is None:  # created since the snapshot? look once more
            user = self._landscape.recheck().user(claims["sub"])
        if user is None:
            raise Unauthorized("the access token's subject is not a known integration user")
        check_user_may_act(user, source_ip)
        return Caller(integration_user=user.external_id, scopes=parse_scopes(claims.get("scope", "")),
                      source_ip=source_ip, token_id=claims.get("jti"), expires_at=expires_at)

    def _verify_signature(self, token: str) -> dict:
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized("the access token's algorithm is not accepted")
        kid = header.get("kid")
        key = self._keys.public_key(kid) if isinstance(kid, str) and kid else None
        if key is None:
            raise Unauthorized("the access token was not signed by a known govern key")
        try:
            decoded = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS))
        except (JoseError, ValueError, TypeError):
            raise Unauthorized("the access token's signature is not valid") from None
        claims = dict(decoded.claims)
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("exp"), int):
            raise Unauthorized("the access token lacks required claims")
        return claims

    def _check_claims(self, claims: dict) -> dt.datetime:
        now = self._clock.now().timestamp()
        if claims["exp"] + self._leeway <= now:
            raise Unauthorized("the access token has expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf - self._leeway > now:
            raise Unauthorized("the access token is not valid yet")
        if claims.get("iss") != self._issuer:
            raise Unauthorized("the access token was issued by someone else")
        aud = claims.get("aud")
        if not (aud == self._audience or (isinstance(aud, list) and self._audience in aud)):
            raise Unauthorized("the access token is meant for another audience")
        return dt.datetime.fromtimestamp(claims["exp"], dt.UTC)


def _bearer(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or value.count(".") != 2:
        raise Unauthorized("a govern access token is required (Authorization: Bearer ...)")
    return value


def _unverified_header(token: str) -> dict:
    try:
        raw = urlsafe_b64decode(token.split(".", 1)[0].encode())
        if json_depth_exceeds(raw):
            raise ValueError("nested too deeply")
        header = json.loads(raw)
    except (ValueError, TypeError):
        raise Unauthorized("the access token is malformed") from None
    if not isinstance(header, dict):
        raise Unauthorized("the access token is malformed")
    return header
