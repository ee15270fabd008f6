"""The upstream token cache, keyed by (named credential, principal, sorted scopes), sealed at rest.

A token is fresh until its `refresh_at`: its expiry minus a leeway of min(settings.token_leeway_seconds,
10% of its lifetime), or the credential's own `leeway:` (govern.domain.token_request.refresh_leeway); a stale
one is never returned. Entries expire from the cache when the token expires.

Opened tokens are remembered per process (`OpenedTokens`), so a cache hit does not decrypt again. With the
vault store the cipher is Vault's transit engine, and decrypting on every hit was a Vault round trip per
request on the broker's hottest path.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import OrderedDict
import hmac

from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.errors import GovernError
from govern.ports import Cache, Cipher, Clock


def cache_key(named_credential: str, principal: str | None, scopes: tuple[str, ...]) -> str:
    """Stable and opaque: names are hashed so that odd characters cannot collide or break key syntax."""
    raw = "\x00".join([named_credential, principal or "-", " ".join(sorted(set(scopes)))])
    return "upstream-token:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def seal_token(cipher: Cipher, key: str, token: UpstreamToken) -> bytes:
    doc = {"k": key, "access_token": token.access_token.reveal(), "token_type": token.token_type,
           "expires_at": token.expires_at.isoformat() if token.expires_at else None,
           "scopes": list(token.scopes),
           # upstream_status describes the call that fetched it; a cache hit made no upstream call
           "extra": {k: v for k, v in token.extra.items() if k != "upstream_status"}}
    return cipher.seal(json.dumps(doc).encode())


def open_token(cipher: Cipher, key: str, sealed: bytes) -> UpstreamToken | None:
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
    """Before the token's own `refresh_at` (its expiry minus the leeway chosen for its lifetime when it was
    fetched, govern.domain.token_request.refresh_leeway); tokens cached without one use `leeway`."""
    if token.expires_at is None:
        return True
    refresh_at = token.extra.get("refresh_at")
    if refresh_at:
        return dt.datetime.fromisoformat(refresh_at) > now
    return token.expires_at - dt.timedelta(seconds=leeway) > now


class OpenedTokens:
    """A per-process memo of already-decrypted tokens, keyed by cache key AND by the exact sealed bytes.

    Why this shape rather than an L1 that skips the shared cache: a hit still reads the sealed value from
    the shared cache (one Redis GET, as before) and uses the memo only if the bytes are identical to the
    ones it opened. So the shared cache stays the single source of truth: a token that any process
    invalidates (the proxy's 401 path deletes it) or replaces (a refresh publishes a new blob) is never
    served from the memo, with no invalidation messages, generation counters or short TTLs to tune. A
    generation counter would also cost one GET per hit, and a TTL-only L1 would keep serving a token the
    upstream had already refused in another process. What the memo saves is the decryption: with the vault
    store a Vault transit round trip, with the local store an HKDF derivation and AES-GCM open.

    Bounded (least recently used out first); an entry is only used while its token is fresh, so its life is
    capped by the token's own freshness.
    """

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bytes, UpstreamToken]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, sealed: bytes) -> UpstreamToken | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != sealed:
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: str, sealed: bytes, token: UpstreamToken) -> None:
        with self._lock:
            self._entries[key] = (bytes(sealed), token)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class TokenCache:
    def __init__(self, cache: Cache, cipher: Cipher, clock: Clock, leeway_seconds: float, *, opened: OpenedTokens | None = None):
        self.cache = cache
        self.cipher = cipher
        self.clock = clock
        self.leeway = leeway_seconds
        self.opened = opened if opened is not None else OpenedTokens()

    def get(self, key: str) -> UpstreamToken | None:
        sealed = self.cache.get(key)
        if sealed is None:
            self.opened.discard(key)
            return None
        token = self.opened.get(key, sealed)
        if token is None:
            token = open_token(self.cipher, key, sealed)
            if token is None:
                return None
            self.opened.put(key, sealed, token)
        if not is_fresh(token, self.clock.now(), self.leeway):
            return None
        return token

    def seal(self, key: str, token: UpstreamToken) -> tuple[bytes, float | None]:
        """The sealed value and its time to live in the cache."""
        ttl = None
        if token.expires_at is not None:
            ttl = max(1.0, (token.expires_at - self.clock.now()).total_seconds())
        return seal_token(self.cipher, key, token), ttl

    def remember(self, key: str, sealed: bytes, token: UpstreamToken) -> None:
        """This process sealed `token` as `sealed` (and published it): a later hit need not open it."""
        self.opened.put(key, sealed, token)

    def put(self, key: str, token: UpstreamToken) -> None:
        value, ttl = self.seal(key, token)
        self.cache.set(key, value, ttl)
        self.opened.put(key, value, token)

    def delete(self, key: str) -> None:
        self.opened.discard(key)
        self.cache.delete(key)

    def delete_if_holds(self, key: str, access_token: str) -> bool:
        """Compare-and-invalidate: drop the entry only while it is still the token `access_token` (the one
        the upstream refused). A token another request has already put in its place stays: deleting it
        would make every request that met the same 401 refresh again."""
        sealed = self.cache.get(key)
        if sealed is None:
            return False
        token = self.opened.get(key, sealed) or open_token(self.cipher, key, sealed)
        if token is not None and not same_token(token, access_token):
            return False
        self.opened.discard(key)
        return self.cache.delete_if(key, sealed)


def same_token(token: UpstreamToken, access_token: str | None) -> bool:
    """Whether `token` is the access token `access_token` (constant time)."""
    return access_token is not None and hmac.compare_digest(token.access_token.reveal().encode(), access_token.encode())
