"""The upstream token cache, keyed by (named credential, principal, sorted scopes), sealed at rest.

A token is fresh while `expires_at - leeway > now` (settings.token_leeway_seconds); a stale one is never
returned. Entries expire from the cache when the token expires.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.errors import GovernError


def cache_key(named_credential: str, principal: str | None, scopes: tuple[str, ...]) -> str:
    """Stable and opaque: names are hashed so that odd characters cannot collide or break key syntax."""
    raw = "\x00".join([named_credential, principal or "-", " ".join(sorted(set(scopes)))])
    return "upstream-token:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def seal_token(cipher, key: str, token: UpstreamToken) -> bytes:
    doc = {"k": key, "access_token": token.access_token.reveal(), "token_type": token.token_type,
           "expires_at": token.expires_at.isoformat() if token.expires_at else None,
           "scopes": list(token.scopes),
           # upstream_status describes the call that fetched it; a cache hit made no upstream call
           "extra": {k: v for k, v in token.extra.items() if k != "upstream_status"}}
    return cipher.seal(json.dumps(doc).encode())


def open_token(cipher, key: str, sealed: bytes) -> UpstreamToken | None:
    try:
        doc = json.loads(cipher.open(sealed))
    except (GovernError, ValueError):
        return None  # unreadable (another key, tampered): treat as a miss, never as an error on the hot path
    if doc.get("k") != key:
        return None
    expires = dt.datetime.fromisoformat(doc["expires_at"]) if doc.get("expires_at") else None
    return UpstreamToken(Secret(doc["access_token"]), doc["token_type"], expires, tuple(doc.get("scopes", ())),
                         doc.get("extra") or {})


def is_fresh(token: UpstreamToken, now: dt.datetime, leeway: float) -> bool:
    return token.expires_at is None or token.expires_at - dt.timedelta(seconds=leeway) > now


class TokenCache:
    def __init__(self, cache, cipher, clock, leeway_seconds: float):
        self.cache = cache
        self.cipher = cipher
        self.clock = clock
        self.leeway = leeway_seconds

    def get(self, key: str) -> UpstreamToken | None:
        sealed = self.cache.get(key)
        if sealed is None:
            return None
        token = open_token(self.cipher, key, sealed)
        if token is None or not is_fresh(token, self.clock.now(), self.leeway):
            return None
        return token

    def seal(self, key: str, token: UpstreamToken) -> tuple[bytes, float | None]:
        """The sealed value and its time to live in the cache."""
        ttl = None
        if token.expires_at is not None:
            ttl = max(1.0, (token.expires_at - self.clock.now()).total_seconds())
        return seal_token(self.cipher, key, token), ttl

    def put(self, key: str, token: UpstreamToken) -> None:
        value, ttl = self.seal(key, token)
        self.cache.set(key, value, ttl)

    def delete(self, key: str) -> None:
        self.cache.delete(key)
