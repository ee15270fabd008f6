"""The upstream token broker: implements govern.ports.UpstreamTokenSource (see service.py).

`build_upstream_tokens` and `build_connect_service` are the token broker's part of the composition root:
they alone hand the store's repositories (behind govern.ports) to the services."""
from __future__ import annotations

import os
import socket
from typing import Any

from govern.broker.upstream.service import UpstreamTokens
from govern.broker.upstream.http import RequestsTokenHttp, TokenHttp
from govern.broker.upstream.reconnect import safe_notifier
from govern.broker.upstream.secret_refs import CredentialSecrets
from govern.broker.upstream.single_flight import RedisSingleFlight
from govern.broker.upstream.token_cache import TokenCache
from govern.errors import ConfigurationError
from govern.cache import MemoryCache
from govern.notify import build_notifier
from govern.broker.upstream.connect import ConnectService
from govern.ports import Cache, Notifier
from govern.store.credential_secret_refs import CredentialSecretRefRepo
from govern.store.refresh_journal import RefreshJournalRepo
from govern.store.upstream_principals import PrincipalRepo
from govern.store.upstream_token_lock import DatabaseSingleFlight
from govern.broker.upstream.revocation import OffboardService
from govern.store.offboarding import OffboardRepo
from govern.broker.upstream.revocation_queue import RevocationWorker
from govern.store.revocation_queue import RevocationQueueRepo


def build_upstream_tokens(services: Any, *, http: TokenHttp | None = None) -> UpstreamTokens:
    """Wire the broker from the composition root's Services."""
    settings = services.settings
    # The secrets package is the one place that encrypts: cached tokens are sealed by its CacheCipher (Vault
    # transit, or AES-256-GCM under the local master key). bootstrap wires it before the broker.
    cipher = services.cache_cipher
    if cipher is None:
        raise ConfigurationError("the upstream token cache needs the secrets package's cache cipher")
    cache: Cache = services.cache
    lease = float(settings.refresh_lease_seconds)
    redis_flight = RedisSingleFlight(cache, lease=lease) if getattr(cache, "kind", "") == "redis" else None
    if redis_flight is None:
        # Without Redis, sealed tokens stay in each process (a cache hit must not cost a database round trip);
        # across processes the PostgreSQL row lock below carries a fetched token to the waiting ones.
        cache = MemoryCache()
    db_flight = None
    if redis_flight is None and services.engine.dialect.name == "postgresql":
        db_flight = DatabaseSingleFlight(services.engine)
    if services.landscape is None:
        raise ConfigurationError("the upstream token source reads the landscape snapshot; wire the broker first")
    return UpstreamTokens(
        principals=PrincipalRepo(services.sessions),
        landscape=services.landscape,
        secrets=CredentialSecrets(CredentialSecretRefRepo(services.sessions), lambda: services.secret_store,
                                  services.clock),
        token_cache=TokenCache(cache, cipher, services.clock, settings.token_leeway_seconds),
        http=http or RequestsTokenHttp(),
        clock=services.clock,
        journal=RefreshJournalRepo(services.sessions, services.clock, f"{socket.gethostname()}:{os.getpid()}"),
        redis_flight=redis_flight,
        db_flight=db_flight,
        metrics=services.metrics,
        notify=safe_notifier(lambda: _notifier(services)),
    )


def _notifier(services: Any) -> Notifier:
    """govern's one notifier (govern.notify), wired by the composition root in any order."""
    notifier = services.notifier
    if notifier is None:
        notifier = services.notifier = build_notifier(services.settings, services.clock)
    return notifier


def build_connect_service(services: Any) -> ConnectService:
    tokens = services.upstream_tokens
    if not isinstance(tokens, UpstreamTokens):
        raise ConfigurationError("connecting a principal needs govern's upstream token broker")
    return ConnectService(principals=tokens.principals, cache=services.cache, cipher=tokens.tokens.cipher,
                          secrets=tokens.secrets, tokens=tokens, clock=services.clock,
                          revocations=build_revocation_queue(services))


def build_offboard_service(services, *, delete_secret):
    """`delete_secret(ref name)`: the secrets package's delete (the vault value, its reference and history)."""
    return OffboardService(records=OffboardRepo(services.sessions), tokens=services.upstream_tokens,
                           decision_log=services.decision_log, clock=services.clock, delete_secret=delete_secret,
                           notify=safe_notifier(lambda: _notifier(services)))


def build_revocation_queue(services: Any) -> RevocationQueueRepo:
    """The upstream revocation queue (govern.ports.RevocationQueue), row-locked on PostgreSQL."""
    return RevocationQueueRepo(services.sessions, row_locks=services.engine.dialect.name == "postgresql")


def build_revocation_worker(services: Any, *, delete_secret) -> RevocationWorker:
    """`delete_secret(ref name)`: the secrets package's delete (the vault value, its reference and history)."""
    tokens = services.upstream_tokens
    if not isinstance(tokens, UpstreamTokens):
        raise ConfigurationError("revoking upstream tokens needs govern's upstream token broker")
    return RevocationWorker(queue=build_revocation_queue(services), tokens=tokens, decision_log=services.decision_log,
                            clock=services.clock, delete_secret=delete_secret,
                            notify=safe_notifier(lambda: _notifier(services)))


__all__ = ["UpstreamTokens", "build_upstream_tokens", "build_connect_service", "build_offboard_service",
           "build_revocation_queue", "build_revocation_worker"]
