"""Workload identity federation at the token endpoint: verify an external issuer's token that stands in for a
federated integration user's secret (RFC 7523 section 2.2 shape: `client_id`, `client_assertion_type`
jwt-bearer, `client_assertion`; docs/federation.md).

In this order, so that nothing is fetched or verified for a token no trust names:
1. the unverified `iss` picks one of the user's trusted issuers (none: refused);
2. the header's `alg` must be one the issuer is trusted with (never `none`, never HS*: the trust's schema has
   asymmetric algorithms only, and the keys used are public asymmetric keys only);
3. the key: by `kid` from the issuer's inline JWKS, or from its JWKS URL through `JwksCache` (an unknown `kid`
   causes at most one refetch per `min_refetch_interval`, so key rotation is picked up and a flood of made-up
   kids costs one request);
4. the signature, with joserfc and exactly the allowed algorithms;
5. the trust's conditions (govern.domain.federation.check_assertion): audience, exp, nbf, iat/max age, sub,
   claims, jti;
6. the `jti` is spent once per issuer in the shared store (govern.store.seen_assertions), until the token expires.

Refusals before the signature is verified say only "client authentication failed" (the caller has not shown it
holds a token of a trusted issuer, so it learns nothing about the user); later ones name what failed.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from govern.domain.federation import (MAX_JTI_LENGTH, PRIVATE_JWK_MEMBERS, PUBLIC_KEY_TYPES, AssertionRefused,
                                      FederationTrust, check_assertion)
from govern.errors import GovernError
from govern.ports import Clock

log = logging.getLogger("govern.broker.federation")

MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 50
MAX_ASSERTION_BYTES = 16 * 1024
NOT_VERIFIED = "client authentication failed"


class JwksUnavailable(GovernError):
    """The issuer's JWKS could not be fetched and govern holds none: govern cannot verify, which is not the
    caller's fault (503 temporarily_unavailable at the token endpoint)."""

    code = "jwks_unavailable"
    status = 503
    title = "govern cannot fetch a trusted issuer's signing keys"


def public_keys(document: Any) -> list[dict]:
    """The usable keys of a JWK Set: public RSA, EC or OKP keys; symmetric or private keys are dropped."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        return []
    return [k for k in keys if isinstance(k, dict) and k.get("kty") in PUBLIC_KEY_TYPES
            and not any(m in k for m in PRIVATE_JWK_MEMBERS)][:MAX_JWKS_KEYS]


class RequestsJwksFetcher:
    """GET a JWKS document: no redirects, at most MAX_JWKS_BYTES, at most `timeout` seconds in all."""

    def __init__(self, timeout: float = 5.0, session: requests.Session | None = None):
        self.timeout = timeout
        self._session = session or requests.Session()
        self._lock = threading.Lock()  # a Session is not thread-safe

    def __call__(self, url: str) -> list[dict]:
        deadline = time.monotonic() + self.timeout
        try:
            with self._lock, self._session.get(url, timeout=(self.timeout, self.timeout), stream=True,
                                               allow_redirects=False,
                                               headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise JwksUnavailable(f"the JWKS endpoint answered {response.status_code}")
                body = b""
                for chunk in response.iter_content(8192):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksUnavailable(f"the JWKS document is larger than {MAX_JWKS_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise JwksUnavailable(f"the JWKS endpoint took longer than {self.timeout:g} s")
        except requests.RequestException as exc:
            raise JwksUnavailable(f"the JWKS endpoint could not be reached ({type(exc).__name__})") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise JwksUnavailable("the JWKS endpoint did not answer JSON") from None
        keys = public_keys(document)
        if not keys:
            raise JwksUnavailable("the JWKS document holds no public signing key")
        return keys


@dataclass
class _Entry:
    keys: list[dict]
    fetched_at: float  # monotonic
    tried_at: float  # the last fetch attempt, successful or not (the refetch limit counts attempts)


class JwksCache:
    """Issuers' JWKS by URL, per process. A document is kept `ttl` seconds; an unknown `kid` refetches it at once,
    but at most once per `min_refetch_interval` per URL. When a refetch fails, the keys held are used until
    `ttl` is over, then the failure is the answer (JwksUnavailable)."""

    def __init__(self, clock: Clock, fetch: Callable[[str], list[dict]] | None = None, *, ttl: float = 300.0,
                 min_refetch_interval: float = 30.0, max_urls: int = 1000,
                 on_fetch: Callable[[str, str], None] | None = None):
        self._clock = clock
        # (issuer, outcome) of every fetch decision: ok, error, refetch_limited (govern_federation_jwks_fetches_total)
        self._on_fetch = on_fetch or (lambda issuer, outcome: None)
        self._fetch = fetch or RequestsJwksFetcher()
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        self._max_urls = max_urls
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # how many fetches were attempted (read by tests and /metrics-minded operators)

    def keys(self, url: str, kid: str | None, issuer: str | None = None) -> list[dict]:
        label = issuer or url
        with self._lock:
            now = self._clock.monotonic()
            entry = self._entries.get(url)
            if entry is None or now - entry.fetched_at >= self.ttl:
                entry = self._refresh(url, label, entry, now, must=True)
            elif kid is not None and not any(k.get("kid") == kid for k in entry.keys):
                if now - entry.tried_at >= self.min_refetch_interval:
                    entry = self._refresh(url, label, entry, now, must=False)
                else:
                    self._on_fetch(label, "refetch_limited")
            return entry.keys

    def _refresh(self, url: str, label: str, entry: _Entry | None, now: float, *, must: bool) -> _Entry:
        if entry is not None and must and now - entry.tried_at < self.min_refetch_interval \
                and now - entry.fetched_at < 2 * self.ttl:
            self._on_fetch(label, "refetch_limited")
            return entry  # expired, but a fetch just failed: no fetch per request while the issuer is down
        self.fetches += 1
        try:
            keys = self._fetch(url)
        except JwksUnavailable as exc:
            self._on_fetch(label, "error")
            log.warning("JWKS fetch failed", extra={"jwks_url": url, "detail": exc.detail})
            if entry is None or now - entry.fetched_at >= 2 * self.ttl:
                if entry is not None:
                    entry.tried_at = now
                raise
            entry.tried_at = now
            return entry
        if len(self._entries) >= self._max_urls and url not in self._entries:
            self._entries.pop(next(iter(self._entries)))
        fresh = _Entry(keys, now, now)
        self._entries[url] = fresh
        self._on_fetch(label, "ok")
        return fresh


class FederatedAssertions:
    """Verify a federated client assertion against one user's trust (steps 1 to 6 of the module docstring)."""

    def __init__(self, jwks: JwksCache, seen, clock: Clock, *, default_audience: str, leeway: float = 60.0,
                 on_outcome: Callable[[str], None] | None = None):
        self._jwks = jwks
        # "ok", an AssertionRefused reason, or "jwks_unavailable" (govern_federation_assertions_total)
        self._on_outcome = on_outcome or (lambda reason: None)
        self._seen = seen  # govern.store.seen_assertions: first_use(key, jti, expires_at)
        self._clock = clock
        self._default_audience = default_audience
        self._leeway = leeway

    def verify(self, trust: FederationTrust, assertion: str) -> dict[str, Any]:
        """The verified claims, or AssertionRefused; JwksUnavailable when the issuer's keys cannot be had."""
        try:
            claims = self._verify(trust, assertion)
        except AssertionRefused as refused:
            self._on_outcome(refused.reason)
            raise
        except JwksUnavailable:
            self._on_outcome("jwks_unavailable")
            raise
        self._on_outcome("ok")
        return claims

    def _verify(self, trust: FederationTrust, assertion: str) -> dict[str, Any]:
        if not isinstance(assertion, str) or len(assertion) > MAX_ASSERTION_BYTES:
            raise AssertionRefused("malformed", NOT_VERIFIED)
        try:
            unverified = jws.extract_compact(assertion.encode())
            header = unverified.headers()
            claims = json.loads(unverified.payload)
        except (JoseError, ValueError, TypeError):
            raise AssertionRefused("malformed", NOT_VERIFIED) from None
        if not isinstance(claims, dict):
            raise AssertionRefused("malformed", NOT_VERIFIED)
        issuer = trust.issuer(claims.get("iss"))
        if issuer is None:
            raise AssertionRefused("issuer", NOT_VERIFIED)
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise AssertionRefused("algorithm", NOT_VERIFIED)
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        if issuer.jwks is not None:
            candidates = public_keys(issuer.jwks)
        else:
            assert issuer.jwks_url is not None  # noqa: S101 - the schema gives exactly one of the two
            candidates = self._jwks.keys(issuer.jwks_url, kid, issuer.issuer)
        chosen = [k for k in candidates if k.get("kid") == kid] if kid is not None else candidates
        if len(chosen) != 1:  # no key by that kid, or no kid and more than one key to try
            raise AssertionRefused("unknown_key", NOT_VERIFIED)
        try:
            verified = jwt.decode(assertion, KeySet.import_key_set({"keys": chosen}),
                                  algorithms=list(issuer.algorithms))
        except (JoseError, ValueError, TypeError):
            raise AssertionRefused("signature", NOT_VERIFIED) from None
        claims = verified.claims
        now = self._clock.now()
        check_assertion(trust, claims, audience=self._default_audience, now=now.timestamp(), leeway=self._leeway)
        jti = str(claims["jti"])[:MAX_JTI_LENGTH]
        expires = dt.datetime.fromtimestamp(float(claims["exp"]) + self._leeway, dt.UTC)
        if not self._seen.first_use(f"federated\x00{issuer.issuer}", jti, max(expires, now)):
            raise AssertionRefused("replayed", "the assertion was already used (jti)")
        return claims
