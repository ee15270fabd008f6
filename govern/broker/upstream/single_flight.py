"""Single-flight refresh: at most one upstream token call at a time per (credential, principal, scopes).

Three layers, cheapest first:
- in one process, a lock per key, so threads queue instead of polling;
- across processes with Redis, a short lease `SET key token NX PX lease` (settings.refresh_lease_seconds, a
  few seconds) whose value is a fencing token from `INCR` (Kleppmann's fencing, applied to the cache
  write). While the upstream call is in flight a heartbeat thread renews the lease (a Lua script that
  extends it only while it still holds our fence), so a live holder keeps it however slow the upstream
  is, and a holder that died (SIGKILL, a lost host) blocks the others for at most one lease. The result
  is published only by a Lua script that checks the lease still holds our fence, so a holder whose lease
  lapsed (a paused process) cannot overwrite a newer result. Waiters poll the cache for the result until
  a deadline. A lease of 60 s was what locked principals out: a dead holder kept the lock past the
  upstream's refresh-token grace period;
- across processes with only PostgreSQL, `SELECT ... FOR UPDATE` on a row per key (upstream_token_lock);
  waiters block on the row lock (bounded by `lock_timeout`), then read the sealed result from the row.
  A row lock needs no lease: PostgreSQL releases it when the holder's connection ends, and the kernel
  closes that connection when the holder dies. The result is written in the transaction that holds the
  lock, so it is fenced by construction.
"""
from __future__ import annotations

import datetime as dt
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from collections.abc import Iterator

import sqlalchemy as sa

from govern.broker.upstream.errors import UpstreamTimeout


class LocalLocks:
    """A lock per key within one process; entries are dropped when nobody holds or waits for them."""

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # key -> [lock, users]

    @contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=max(0.0, timeout)):
                raise UpstreamTimeout("timed out waiting for another request to fetch the upstream token")
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    self._locks.pop(key, None)


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_FENCED_SET = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
else redis.call('set', KEYS[2], ARGV[2]) end
return 1
"""


@dataclass
class RedisFlight:
    key: str
    fence: str
    lost: threading.Event = field(default_factory=threading.Event)  # a renewal found the lease gone


class RedisSingleFlight:
    """Every Redis call goes through RedisCache._call, which turns Redis errors into CacheUnavailable (503)."""

    def __init__(self, redis_cache, lease: float = 5.0):
        self.cache = redis_cache  # govern.cache.RedisCache: its client, key prefix and error mapping
        self.lease = lease
        client = redis_cache.client
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._fenced_set = client.register_script(_FENCED_SET)
        self._call = redis_cache._call

    def _lock_key(self, key: str) -> str:
        return self.cache.key("flight:" + key)

    def try_acquire(self, key: str) -> RedisFlight | None:
        fence = str(self.cache.incr("fence:" + key)) + ":" + uuid.uuid4().hex[:8]
        ok = self._call(self.cache.client.set, self._lock_key(key), fence, nx=True, px=int(self.lease * 1000))
        return RedisFlight(key, fence) if ok else None

    def is_locked(self, key: str) -> bool:
        return bool(self._call(self.cache.client.exists, self._lock_key(key)))

    def renew(self, flight: RedisFlight) -> bool:
        """Extend our lease by one lease, only while it still holds our fence."""
        ok = bool(self._call(self._renew, keys=[self._lock_key(flight.key)],
                             args=[flight.fence, int(self.lease * 1000)]))
        if not ok:
            flight.lost.set()
        return ok

    @contextmanager
    def heartbeat(self, flight: RedisFlight) -> Iterator[RedisFlight]:
        """Renew the lease every third of a lease until the block ends (a daemon thread: a process that
        dies takes its heartbeat with it, and the lease runs out on its own)."""
        stop = threading.Event()

        def beat():
            while not stop.wait(self.lease / 3):
                try:
                    if not self.renew(flight):
                        return
                except Exception:  # noqa: BLE001, S112 - Redis down: the fenced publish refuses a lapsed lease anyway
                    continue

        thread = threading.Thread(target=beat, name="refresh-lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield flight
        finally:
            stop.set()
            thread.join()

    def publish(self, flight: RedisFlight, value: bytes, ttl: float | None) -> bool:
        """Write the cache entry only while we still hold the lease (fenced)."""
        px = int(ttl * 1000) if ttl else 0
        return bool(self._call(self._fenced_set, keys=[self._lock_key(flight.key), self.cache.key(flight.key)],
                               args=[flight.fence, value, px]))

    def release(self, flight: RedisFlight) -> None:
        self._call(self._release, keys=[self._lock_key(flight.key)], args=[flight.fence])


class RowLockFlight:
    """Holds `SELECT ... FOR UPDATE` on the key's row for the duration of one upstream call."""

    def __init__(self, conn, key: str, sealed: bytes | None, expires_at: dt.datetime | None):
        self.conn = conn
        self.key = key
        self.sealed = sealed
        self.expires_at = expires_at

    def publish(self, value: bytes, expires_at: dt.datetime | None) -> None:
        self.conn.execute(sa.text("UPDATE upstream_token_lock SET sealed_token = :v, expires_at = :e, fence = fence + 1 "
                                  "WHERE key = :k"), {"v": value, "e": expires_at, "k": self.key})


class DatabaseSingleFlight:
    """Row locks on PostgreSQL. (SQLite has no row locks; there govern is a single process by design.)"""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def forget(self, key: str) -> None:
        """Drop the sealed result (invalidate): the next holder calls the upstream."""
        with self.engine.begin() as conn:
            conn.execute(sa.text("UPDATE upstream_token_lock SET sealed_token = NULL, expires_at = NULL WHERE key = :k"),
                         {"k": key})

    def sealed(self, key: str) -> bytes | None:
        """The sealed result held for `key`, if any (read by govern offboard, which revokes it)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT sealed_token FROM upstream_token_lock WHERE key = :k"), {"k": key}).first()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def forget_if(self, key: str, refused) -> None:
        """Drop the sealed result only if `refused(sealed)` (compare-and-invalidate). A row locked by a
        holder is being refreshed right now: its result replaces the refused one anyway, so it is skipped."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.text("SELECT sealed_token FROM upstream_token_lock WHERE key = :k "
                                       "FOR UPDATE SKIP LOCKED"), {"k": key}).first()
            if row is not None and row[0] is not None and refused(bytes(row[0])):
                conn.execute(sa.text("UPDATE upstream_token_lock SET sealed_token = NULL, expires_at = NULL "
                                     "WHERE key = :k"), {"k": key})

    @contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[RowLockFlight]:
        with self.engine.connect() as conn:
            with conn.begin():
                conn.execute(sa.text("INSERT INTO upstream_token_lock (key, fence) VALUES (:k, 0) "
                                     "ON CONFLICT (key) DO NOTHING"), {"k": key})
            try:
                with conn.begin():
                    ms = max(1, int(timeout * 1000))
                    conn.execute(sa.text(f"SET LOCAL lock_timeout = {ms}"))
                    row = conn.execute(sa.text("SELECT sealed_token, expires_at FROM upstream_token_lock "
                                               "WHERE key = :k FOR UPDATE"), {"k": key}).one()
                    yield RowLockFlight(conn, key, row[0], row[1])
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise UpstreamTimeout("timed out waiting for another process to fetch the upstream token") from None
                raise
