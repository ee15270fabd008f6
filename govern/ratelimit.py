"""Rate limits on authentication, kept by the `limits` library: in Redis when GOVERN_REDIS_URL is set (so
every process and worker counts together), in process memory otherwise.

Each limit is a setting (govern.config, GOVERN_RATELIMIT_*), in the library's notation ("10/15minutes").
Counting is a fixed window per key: cheap (one INCR) and predictable for Retry-After.

| limit | key | counts | setting |
|---|---|---|---|
| token_requests | source address | every POST /oauth/token | ratelimit_token_requests_per_address |
| client_failures_pair | (client id, address) | failed client authentication | ratelimit_client_failures_per_address_client |
| client_failures_address | address | failed client authentication | ratelimit_client_failures_per_address |
| client_failures_client | client id | failed client authentication | ratelimit_client_failures_per_client |
| console_failures_account | console username | failed console sign-in | ratelimit_console_failures_per_account |
| console_failures_pair | (username, address) | failed console sign-in | ratelimit_console_failures_per_account_address |

docs/security.md "Rate limits" says how they combine.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter

from govern.cache import CacheUnavailable
from govern.errors import RateLimited

try:
    from redis import RedisError
    _REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError,)
except ImportError:  # pragma: no cover - redis is a dependency
    _REDIS_ERRORS = ()
_STORAGE_ERRORS = (StorageError, *_REDIS_ERRORS, OSError)

LIMIT_SETTINGS = {
    "token_requests": "ratelimit_token_requests_per_address",
    "client_failures_pair": "ratelimit_client_failures_per_address_client",
    "client_failures_address": "ratelimit_client_failures_per_address",
    "client_failures_client": "ratelimit_client_failures_per_client",
    "console_failures_account": "ratelimit_console_failures_per_account",
    "console_failures_pair": "ratelimit_console_failures_per_account_address",
}


class TooManyAttempts(RateLimited):
    """A limit is exhausted; `retry_after` (whole seconds) says when its window resets."""

    code = "rate_limited"

    def __init__(self, detail: str, retry_after: int, limit: str):
        self.retry_after = max(1, int(retry_after))
        self.limit = limit
        super().__init__(detail, headers={"Retry-After": str(self.retry_after)})


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


class RateLimits:
    """Named limits over one storage. `test` asks without counting, `hit` counts."""

    def __init__(self, items: dict[str, RateLimitItem], storage, *, wall=time.time, memo_size: int = 100_000):
        self._items = items
        self._storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._wall = wall
        # Keys found over their limit, with the time their window ends. A fixed window only resets when it
        # ends, so until then this process answers from memory: a guesser who keeps going costs no round
        # trip to Redis (bench/auth_bruteforce.py). Bounded; cleared wholesale when full.
        self._blocked: dict[tuple, float] = {}
        self._memo_size = memo_size

    @property
    def storage_kind(self) -> str:
        return "redis" if isinstance(self._storage, RedisStorage) else "memory"

    def item(self, name: str) -> RateLimitItem:
        return self._items[name]

    def known_blocked(self, name: str, *key: str) -> Verdict | None:
        """The refusal this process already knows of (no storage call), or None."""
        until = self._blocked.get((name, *key))
        if until is None:
            return None
        left = until - self._wall()
        if left <= 0:
            self._blocked.pop((name, *key), None)
            return None
        return Verdict(False, max(1, math.ceil(left)))

    def test(self, name: str, *key: str) -> Verdict:
        known = self.known_blocked(name, *key)
        if known is not None:
            return known
        item = self._items[name]
        if self._call(self._limiter.test, item, *key):
            return Verdict(True)
        return self._blocked_until(name, item, key)

    def hit(self, name: str, *key: str) -> Verdict:
        known = self.known_blocked(name, *key)
        if known is not None:
            return known  # counting past the limit changes nothing: the window ends when it ends
        item = self._items[name]
        if self._call(self._limiter.hit, item, *key):
            return Verdict(True)
        return self._blocked_until(name, item, key)

    def untouched(self, name: str, *key: str) -> bool:
        """True when nothing was counted for `key` in the current window."""
        item = self._items[name]
        stats = self._call(self._limiter.get_window_stats, item, *key)
        return stats.remaining >= item.amount

    def clear(self, name: str, *key: str) -> None:
        self._blocked.pop((name, *key), None)
        self._call(self._limiter.clear, self._items[name], *key)

    def _blocked_until(self, name: str, item: RateLimitItem, key) -> Verdict:
        until = self._call(self._storage.get_expiry, item.key_for(*key))
        now = self._wall()
        if until <= now:  # the window ended between the two calls
            until = now + 1
        if len(self._blocked) >= self._memo_size:
            self._blocked.clear()
        self._blocked[(name, *key)] = until
        return Verdict(False, max(1, math.ceil(until - now)))

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except _STORAGE_ERRORS:
            raise CacheUnavailable("the rate-limit store (Redis) cannot be reached") from None


def build_rate_limits(settings) -> RateLimits:
    items = {name: parse_many(getattr(settings, field))[0] for name, field in LIMIT_SETTINGS.items()}
    storage: RedisStorage | MemoryStorage
    if settings.redis_url:
        storage = RedisStorage(settings.redis_url, key_prefix=f"{settings.redis_prefix}limits",
                               wrap_exceptions=True, socket_timeout=2, socket_connect_timeout=2)
    else:
        storage = MemoryStorage(wrap_exceptions=True)
    return RateLimits(items, storage)
