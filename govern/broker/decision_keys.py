"""The decision chain's HMAC keys: 256-bit random keys in the secret store, named by a key id.

The `decision_log_key` table names each key and where its value lives; the value itself is only in the
secret store (`govern/decision-log-keys/<kid>`). One key is active and signs new records and checkpoints;
after `rotate` the previous ones are retired: they sign nothing more, but the records they signed keep
verifying. The key is created at `govern init` or at the first record, whichever comes first; two
processes racing to create it make two keys, both valid (the newest signs).

Keys are kept in the process once read, and in the shared cache sealed by the cache cipher (as cached
upstream tokens are), so the log keeps working while the secret store is down, also in a process started
during the outage (degraded mode); an active key made by another process is picked up within
`reload_interval`.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from govern.domain.secret import Secret
from govern.errors import ConfigurationError, SecretStoreUnavailable
from govern.ports import Cache, Cipher, Clock, DecisionKeyRecords, SecretStore

log = logging.getLogger("govern.decisions")
SECRET_PREFIX = "govern/decision-log-keys/"  # noqa: S105 - a path prefix in the secret store
CACHE_PREFIX = "decision-log-key:"
CACHE_TTL_SECONDS = 7 * 24 * 3600  # refreshed whenever a process reads the key from the secret store


class DecisionKeys:
    def __init__(self, records: DecisionKeyRecords, secret_store_provider: Callable[[], SecretStore | None], clock: Clock,
                 *, cache: Cache | None = None, cipher_provider: Callable[[], Cipher | None] | None = None,
                 reload_interval: float = 10.0):
        self._records = records  # govern.store.decision_keys
        self._store = secret_store_provider  # a callable: the store is wired by govern.secrets
        self._cache = cache
        self._cipher = cipher_provider or (lambda: None)
        self._clock = clock
        self._reload_interval = reload_interval
        self._lock = threading.Lock()
        self._values: dict[str, bytes] = {}
        self._active: str | None = None
        self._active_at = float("-inf")

    def active(self) -> tuple[str, bytes]:
        """The key that signs now (created if there is none)."""
        kid = self._active
        if kid is None or time.monotonic() - self._active_at >= self._reload_interval:
            with self._lock:
                if self._active is None or time.monotonic() - self._active_at >= self._reload_interval:
                    self._active = self._newest_active() or self._create()
                    self._active_at = time.monotonic()
                kid = self._active
        return kid, self.value(kid)

    def value(self, kid: str) -> bytes:
        found = self._values.get(kid)
        if found is None:
            found = self.get(kid)
            if found is None:
                raise LookupError(f"no decision log key {kid!r}")
        return found

    def get(self, kid: str) -> bytes | None:
        """The key's value, or None for a key govern never made (a forged key id)."""
        found = self._values.get(kid)
        if found is not None:
            return found
        path = self._records.path_of(kid)
        if path is None:
            return None
        try:
            found = bytes.fromhex(self._require_store().get(path).reveal())
        except SecretStoreUnavailable:
            found = self._cached(kid)
            if found is None:
                raise
            log.warning("secret store down: the decision log key comes from the shared cache", extra={"kid": kid})
        else:
            self._keep(kid, found)
        self._values[kid] = found
        return found

    def _cached(self, kid: str) -> bytes | None:
        cipher, blob = self._cipher(), self._cache.get(CACHE_PREFIX + kid) if self._cache is not None else None
        if cipher is None or blob is None:
            return None
        try:
            return cipher.open(blob)
        except Exception as exc:  # noqa: BLE001 - an unreadable copy is as good as none
            log.warning("the cached decision log key cannot be opened", extra={"kid": kid,
                                                                               "exc_type": type(exc).__name__})
            return None

    def _keep(self, kid: str, value: bytes) -> None:
        cipher = self._cipher()
        if cipher is None or self._cache is None:
            return
        try:
            self._cache.set(CACHE_PREFIX + kid, cipher.seal(value), CACHE_TTL_SECONDS)
        except Exception as exc:  # noqa: BLE001 - only the degraded mode depends on it
            log.warning("the decision log key could not be cached", extra={"kid": kid,
                                                                           "exc_type": type(exc).__name__})

    def rotate(self) -> str:
        """Make a new key active; the previous ones are retired (they still verify what they signed)."""
        with self._lock:
            self._records.retire_active()
            self._active = self._create()
            self._active_at = time.monotonic()
            return self._active

    def listing(self) -> list[dict]:
        return self._records.listing()

    def _newest_active(self) -> str | None:
        return self._records.newest_active()

    def _require_store(self):
        store = self._store()
        if store is None:
            raise ConfigurationError("govern cannot record decisions without a secret store for the decision "
                                     "log's key; configure GOVERN_SECRET_STORE (local or vault)")
        return store

    def _create(self) -> str:
        kid = f"dl-{self._clock.now():%Y%m%d}-{secrets.token_hex(4)}"
        value = secrets.token_bytes(32)
        path = SECRET_PREFIX + kid
        self._require_store().put(path, Secret(value.hex()), cas=0)
        self._records.add(kid, path, self._clock.now())
        self._values[kid] = value
        self._keep(kid, value)
        log.info("decision log key created", extra={"kid": kid})
        return kid


def init_step(keys: DecisionKeys) -> str:
    """`govern init`: the decision chain's key exists in the secret store."""
    kid, _ = keys.active()
    return f"decision log: chain key {kid} in the secret store"
