"""The callout proxy: calls by named credential with the credential injected (see service.py).

`build_proxy` is the proxy's part of the composition root: it alone turns the Services that govern.bootstrap
built into the proxy's named collaborators, with the store's repositories behind their ports."""
from __future__ import annotations

from typing import Any

from govern.broker.proxy.breaker import CircuitBreakers, breaker_report
from govern.broker.proxy.injection import CredentialInjector
from govern.broker.proxy.service import ProxyService
from govern.broker.proxy.transport import Urllib3Transport
from govern.errors import ConfigurationError
from govern.ports import Cache, Clock
from govern.store.breaker_settings import BreakerSettingRepo
from govern.store.credential_secret_refs import CredentialSecretRefRepo
from govern.store.proxy_queue import ProxyQueueRepo


def build_proxy(services: Any) -> ProxyService:
    if services.landscape is None or services.decider is None or services.decision_log is None:
        raise ConfigurationError("the proxy needs the landscape snapshot, a policy decider and a decision log; "
                                 "wire the broker first")
    settings = services.settings
    transport = Urllib3Transport(max_connections=settings.proxy_max_connections_per_origin,
                                 max_decoded_bytes=settings.proxy_max_decoded_bytes)
    injector = CredentialInjector(landscape=services.landscape, upstream_tokens=services.upstream_tokens,
                                  secret_store=lambda: services.secret_store,
                                  refs=CredentialSecretRefRepo(services.sessions))
    proxy = ProxyService(
        landscape=services.landscape, decider=services.decider, decision_log=services.decision_log,
        injector=injector, queue=ProxyQueueRepo(services.sessions, row_locks=services.engine.dialect.name == "postgresql"),
        breaker_settings=BreakerSettingRepo(services.sessions), cache=services.cache, clock=services.clock,
        notifier=services.notifier, metrics=services.metrics,
        max_concurrent_calls=settings.proxy_max_concurrent_calls, transport=transport)
    services.closers.append(proxy.transport.close)
    return proxy


def breaker_states(proxy: ProxyService | None, *, sessions: Any, cache: Cache, clock: Clock) -> list[dict[str, Any]]:
    """Every system's circuit state, for the API and for metrics (`state` is closed, open or half_open).

    `proxy`: the composition root's proxy; without one (services of the store only, a command-line report) the
    same states are read from the stored breaker settings (`sessions`, the store's session factory) and the shared
    `cache`."""
    if proxy is not None:
        return proxy.breaker_states()
    return breaker_report(BreakerSettingRepo(sessions), CircuitBreakers(cache, clock))


__all__ = ["build_proxy", "breaker_states"]
