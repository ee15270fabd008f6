"""The composition root: the one place that connects adapters (database, secret store, cache) to the core.

`create_app` and the CLI both call `build_services`; nothing else constructs an engine or an adapter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from govern.cache import build_cache
from govern.config import Settings
from govern.ports import Clock, SystemClock
from govern.store.db import make_engine, make_session_factory


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    cache: Any
    clock: Clock
    secret_store: Any = None  # govern.ports.SecretStore, wired by govern.secrets
    # The broker's seams (govern.ports): wired by govern.broker; the API and the proxy use them.
    authenticator: Any = None  # CallerAuthenticator
    decider: Any = None  # PolicyDecider
    decision_log: Any = None  # DecisionLog
    upstream_tokens: Any = None  # UpstreamTokenSource
    # name -> callable raising on failure; /readyz runs each one
    metrics: Any = None  # govern.metrics.Metrics
    rate_limits: Any = None  # govern.ratelimit.RateLimits (authentication limits)
    health_checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for closer in self.extras.get("_closers", []):
            closer()
        self.engine.dispose()


def build_services(settings: Settings, *, clock: Clock | None = None, **overrides: Any) -> Services:
    engine = overrides.pop("engine", None) or make_engine(settings.database_url)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        cache=overrides.pop("cache", None) or _shared_cache(settings, engine),
        clock=clock or SystemClock(),
    )
    from govern.ratelimit import build_rate_limits

    services.rate_limits = overrides.pop("rate_limits", None) or build_rate_limits(settings)

    def check_database() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    services.health_checks["database"] = check_database
    services.metrics = _build_metrics(services)
    services.health_checks["cache"] = services.cache.ping
    secret_store = overrides.pop("secret_store", None)  # tests may pass a fake
    services.extras.update(overrides)
    from govern.secrets import wire as wire_secrets

    wire_secrets(services, store=secret_store)
    from govern.broker.wiring import build_authorization

    build_authorization(services)
    from govern.broker.upstream import build_upstream_tokens

    services.upstream_tokens = build_upstream_tokens(services)
    from govern.broker.proxy import build_proxy
    from govern.notify import build_notifier

    services.extras.setdefault("notifier", build_notifier(settings, services.clock))
    services.extras.setdefault("proxy", build_proxy(services))
    from govern.rotation.wiring import wire_rotation

    wire_rotation(services)
    from govern.ops import instrument

    instrument(services)
    return services


def _shared_cache(settings: Settings, engine: sa.Engine):
    """Redis when configured; otherwise the database, so that state a later request needs (connect state,
    idempotency, breakers, budgets, console lockouts) is shared by every process (govern.store.shared_state)."""
    if settings.redis_url:
        return build_cache(settings.redis_url, settings.redis_prefix)
    from govern.store.shared_state import DatabaseCache

    return DatabaseCache(engine)


def _build_metrics(services: Services):
    from govern.metrics import Metrics, StateCollector
    from govern.store import state_metrics

    metrics = Metrics()
    readers = {
        "govern_secrets_rotation_due": ("Secrets whose rotation is due or overdue.", ["state"],
                                        lambda: state_metrics.secrets_due(services.sessions)),
        "govern_findings_open": ("Open audit findings by severity.", ["severity"],
                                 lambda: state_metrics.open_findings(services.sessions)),
        "govern_ready_check": ("1 when a readiness check passes, 0 when it fails.", ["check"],
                               lambda: _ready_checks(services)),
    }
    collector = StateCollector(readers)
    metrics.add_state_collector(collector)
    metrics._state_collectors = [collector]
    services.extras["metric_readers"] = readers
    return metrics


def _ready_checks(services: Services) -> dict[tuple, float]:
    results = {}
    for name, check in services.health_checks.items():
        try:
            check()
            results[(name,)] = 1.0
        except Exception:  # noqa: BLE001 - a failing check is the value being reported
            results[(name,)] = 0.0
    return results
