"""Cache, counters and locks: in-process for one process (the default), Redis across processes."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from govern.errors import GovernError


class CacheUnavailable(GovernError):
    code = "cache_unavailable"
    status = 503
    title = "The shared cache cannot be reached"


class MemoryCache:
    """A thread-safe TTL cache for a single process."""

    kind = "memory"

    def __init__(self, clock=time.monotonic):
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _live(self, key: str):
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return value

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            return [self._live(key) for key in keys]

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        with self._lock:
            self._data[key] = (value, self._clock() + ttl if ttl else None)

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (value, self._clock() + ttl if ttl else None)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def delete_if(self, key: str, value: bytes) -> bool:
        """Delete `key` only while it still holds exactly `value` (compare-and-delete)."""
        with self._lock:
            if self._live(key) != value:
                return False
            del self._data[key]
            return True

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._lock:
            current = self._live(key)
            value = int(current or b"0") + amount
            expires = self._data[key][1] if current is not None else (self._clock() + ttl if ttl else None)
            self._data[key] = (str(value).encode(), expires)
            return value

    def incr_each(self, keys: Sequence[str], ttl: float) -> list[int]:
        return [self.incr(key, 1, ttl) for key in keys]

    def ping(self) -> None:
        return None


class RedisCache:
    kind = "redis"

    def __init__(self, url: str, prefix: str = "govern:"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._errors = (redis.RedisError, OSError)
        self._delete_if: Callable[..., Any] | None = None  # the registered Lua script, on first use

    @property
    def client(self):
        return self._redis

    def key(self, key: str) -> str:
        return self._prefix + key

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except self._errors:
            raise CacheUnavailable("the shared cache (Redis) cannot be reached") from None

    def get(self, key: str) -> bytes | None:
        return self._call(self._redis.get, self.key(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(self._call(self._redis.mget, [self.key(k) for k in keys])) if keys else []

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._call(self._redis.set, self.key(key), value, px=int(ttl * 1000) if ttl else None)

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        return bool(self._call(self._redis.set, self.key(key), value, nx=True, px=int(ttl * 1000) if ttl else None))

    def delete(self, key: str) -> None:
        self._call(self._redis.delete, self.key(key))

    def delete_if(self, key: str, value: bytes) -> bool:
        """Delete `key` only while it still holds exactly `value` (compare-and-delete, one Lua script)."""
        if self._delete_if is None:
            self._delete_if = self._redis.register_script(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0")
        return bool(self._call(self._delete_if, keys=[self.key(key)], args=[value]))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        pipe = self._redis.pipeline()
        pipe.incrby(self.key(key), amount)
        if ttl:
            pipe.expire(self.key(key), int(ttl), nx=True)
        return int(self._call(pipe.execute)[0])

    def incr_each(self, keys: Sequence[str], ttl: float) -> list[int]:
        """INCR and EXPIRE NX of every key in one pipeline: one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.incr(self.key(key))
            pipe.expire(self.key(key), int(ttl), nx=True)
        replies = self._call(pipe.execute)
        return [int(n) for n in replies[0::2]]

    def ping(self) -> None:
        self._call(self._redis.ping)


def build_cache(redis_url: str | None, prefix: str = "govern:"):
    return RedisCache(redis_url, prefix) if redis_url else MemoryCache()
