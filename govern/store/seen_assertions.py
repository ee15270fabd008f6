"""Single-use client assertions (RFC 7523 section 3, item 7: the `jti` of a private_key_jwt assertion is
used once) in the database, for instances without Redis: every process sharing the database sees the
same set. Insert-or-fail on the primary key is the whole protocol; expired rows are purged now and then.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import threading

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from govern.ports import Cache, Clock
from govern.store.db import table_of
from govern.store.tables import SeenClientAssertion

_TABLE = table_of(SeenClientAssertion)


class DatabaseSeenAssertions:
    """`first_use(client_id, jti, expires_at)` is True exactly once per (client id, jti) while unexpired."""

    def __init__(self, engine: sa.Engine, clock: Clock, *, purge_every_seconds: float = 60.0):
        self._engine = engine
        self._clock = clock
        self._purge_every = purge_every_seconds
        self._next_purge = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def key(client_id: str, jti: str) -> str:
        return hashlib.sha256(f"{client_id}\x00{jti}".encode()).hexdigest()

    def first_use(self, client_id: str, jti: str, expires_at: dt.datetime) -> bool:
        now = self._clock.now()
        self._maybe_purge(now)
        key = self.key(client_id, jti)
        # Seen before? Only a row still alive proves a replay: an expired row (not yet purged) is removed
        # and the insert tried once more (the assertion itself is refused on its `exp` in that case anyway).
        for _ in range(2):
            if self._insert(key, expires_at):
                return True
            if not self._delete_if_expired(key, now):
                return False
        return False

    def _insert(self, key: str, expires_at: dt.datetime) -> bool:
        try:
            with self._engine.begin() as conn:
                conn.execute(_TABLE.insert().values(key=key, expires_at=expires_at))
            return True
        except IntegrityError:
            return False

    def _delete_if_expired(self, key: str, now: dt.datetime) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(_TABLE.delete().where(_TABLE.c.key == key).where(_TABLE.c.expires_at < now))
            return bool(result.rowcount)

    def purge(self, now: dt.datetime | None = None) -> int:
        now = now or self._clock.now()
        with self._engine.begin() as conn:
            return conn.execute(_TABLE.delete().where(_TABLE.c.expires_at < now)).rowcount or 0

    def _maybe_purge(self, now: dt.datetime) -> None:
        mono = self._clock.monotonic() if hasattr(self._clock, "monotonic") else now.timestamp()
        with self._lock:
            if mono < self._next_purge:
                return
            self._next_purge = mono + self._purge_every
        self.purge(now)


class CacheSeenAssertions:
    """The same contract on the shared cache (Redis SET NX with a TTL), when Redis is configured."""

    def __init__(self, cache: Cache, clock: Clock):
        self._cache = cache
        self._clock = clock

    def first_use(self, client_id: str, jti: str, expires_at: dt.datetime) -> bool:
        ttl = max(1.0, (expires_at - self._clock.now()).total_seconds())
        return self._cache.add(f"oauth:jti:{DatabaseSeenAssertions.key(client_id, jti)}", b"1", ttl=ttl)
