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
        cache=overrides.pop("cache", None) or build_cache(settings.redis_url, settings.redis_prefix),
        clock=clock or SystemClock(),
    )

    def check_database() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    services.health_checks["database"] = check_database
    services.health_checks["cache"] = services.cache.ping
    secret_store = overrides.pop("secret_store", None)  # tests may pass a fake
    services.extras.update(overrides)
    from govern.secrets import wire as wire_secrets

    wire_secrets(services, store=secret_store)
    return services
