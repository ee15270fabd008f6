"""The upstream token broker: implements govern.ports.UpstreamTokenSource (see service.py)."""
from __future__ import annotations

import os
import socket

from govern.broker.upstream.service import UpstreamTokens


def build_upstream_tokens(services, *, http=None) -> UpstreamTokens:
    """Wire the broker from the composition root's Services."""
    from govern.broker.upstream.cipher import AesGcmCipher
    from govern.broker.upstream.http import RequestsTokenHttp
    from govern.broker.upstream.journal import RefreshJournalRepo
    from govern.broker.upstream.reconnect import safe_notifier
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.broker.upstream.single_flight import DatabaseSingleFlight, RedisSingleFlight
    from govern.broker.upstream.token_cache import TokenCache
    from govern.config import instance_secret_key

    settings = services.settings
    cipher = _LazyCipher(services, lambda: AesGcmCipher.derived_from(instance_secret_key(settings)))
    cache = services.cache
    lease = float(settings.refresh_lease_seconds)
    redis_flight = RedisSingleFlight(cache, lease=lease) if getattr(cache, "kind", "") == "redis" else None
    if redis_flight is None:
        # Without Redis, sealed tokens stay in each process (a cache hit must not cost a database round trip);
        # across processes the PostgreSQL row lock below carries a fetched token to the waiting ones.
        from govern.cache import MemoryCache

        cache = MemoryCache()
    db_flight = None
    if redis_flight is None and services.engine.dialect.name == "postgresql":
        db_flight = DatabaseSingleFlight(services.engine)
    return UpstreamTokens(
        sessions=services.sessions,
        secrets=CredentialSecrets(services.sessions, lambda: services.secret_store, services.clock),
        token_cache=TokenCache(cache, cipher, services.clock, settings.token_leeway_seconds),
        http=http or RequestsTokenHttp(),
        clock=services.clock,
        journal=RefreshJournalRepo(services.sessions, services.clock, f"{socket.gethostname()}:{os.getpid()}"),
        redis_flight=redis_flight,
        db_flight=db_flight,
        metrics=services.metrics,
        notify=safe_notifier(lambda: _notifier(services)),
    )


def _notifier(services):
    """govern's one notifier (govern.notify), wired by the composition root in any order."""
    notifier = services.extras.get("notifier")
    if notifier is None:
        from govern.notify import build_notifier

        notifier = services.extras.setdefault("notifier", build_notifier(services.settings, services.clock))
    return notifier


class _LazyCipher:
    """The secrets package's `extras["cache_cipher"]` when it is wired (in any order in the composition root),
    else the instance-key AES-GCM cipher. Chosen on first use, then fixed for the life of the process."""

    def __init__(self, services, fallback):
        self._services = services
        self._fallback = fallback
        self._cipher = None

    def _get(self):
        if self._cipher is None:
            self._cipher = self._services.extras.get("cache_cipher") or self._fallback()
        return self._cipher

    def seal(self, data: bytes) -> bytes:
        return self._get().seal(data)

    def open(self, data: bytes) -> bytes:
        return self._get().open(data)


def build_connect_service(services):
    from govern.broker.upstream.connect import ConnectService

    tokens = services.upstream_tokens
    return ConnectService(sessions=services.sessions, cache=services.cache, cipher=tokens.tokens.cipher,
                          secrets=tokens.secrets, tokens=tokens, clock=services.clock)


__all__ = ["UpstreamTokens", "build_upstream_tokens", "build_connect_service"]
