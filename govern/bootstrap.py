"""The composition root: the one place that connects adapters (database, secret store, cache) to the core.

`create_app` and the CLI both call `build_services`; nothing else constructs an engine or an adapter.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from govern.cache import build_cache
from govern.config import Settings
from govern.ports import (Cache, CallerAuthenticator, Cipher, Clock, DecisionLog, Notifier, PolicyDecider, SecretStore,
                          SystemClock, UpstreamTokenSource)
from govern.ports import RotationRepository
from govern.store.db import make_engine, make_session_factory

if TYPE_CHECKING:  # the concrete collaborators' types; the composition root may know them all
    from govern.broker.decision_keys import DecisionKeys
    from govern.broker.landscape import LandscapeCache
    from govern.broker.proxy.service import ProxyService
    from govern.broker.signing_keys import SigningKeys
    from govern.broker.upstream.connect import ConnectService
    from govern.metrics import Metrics
    from govern.ratelimit import RateLimits
    from govern.rotation.wiring import SigningKeyHook


@dataclass
class Services:
    """What the composition root built, each collaborator under its own name and type (no string-keyed
    bag: a key spelled two ways cannot name two objects). The packages' wire functions set their part."""

    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    cache: Cache
    clock: Clock
    secret_store: SecretStore | None = None  # wired by govern.secrets
    cache_cipher: Cipher | None = None  # govern.secrets.cipher.CacheCipher: the one place that encrypts caches
    # The broker's seams (govern.ports): wired by govern.broker; the API and the proxy use them.
    authenticator: CallerAuthenticator | None = None
    decider: PolicyDecider | None = None
    decision_log: DecisionLog | None = None
    upstream_tokens: UpstreamTokenSource | None = None
    landscape: LandscapeCache | None = None  # the one snapshot of the landscape the decider reads
    signing_keys: SigningKeys | None = None  # govern's own token-signing key set (the authorization server)
    decision_keys: DecisionKeys | None = None  # the decision chain's HMAC keys
    proxy: ProxyService | None = None
    connect: ConnectService | None = None  # built on first use by the connect edge
    notifier: Notifier | None = None
    signing_key_hook: SigningKeyHook | None = None  # rotation's view of signing_keys (govern.rotation.wiring)
    # A new repository of rotation runs per rotation service (each pins its own connection for a worker pass).
    rotation_repository: Callable[[], RotationRepository] | None = None
    metrics: Metrics | None = None
    rate_limits: RateLimits | None = None  # authentication limits
    metric_readers: dict[str, Any] = field(default_factory=dict)
    # name -> callable raising on failure; /readyz runs each one
    health_checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    init_steps: list[Callable[[Services], str]] = field(default_factory=list)  # what `govern init` runs
    closers: list[Callable[[], None]] = field(default_factory=list)  # run by close(), in order
    # Test and deployment seams, set through build_services(**overrides):
    policy_validator: Callable[..., Any] | None = None  # the console's policies page
    circuit_breaker_states: Callable[[], list[dict[str, Any]]] | None = None  # the dashboard's breakers
    policies_dir: str | None = None
    postgres_admin_url: str | None = None  # the postgres_role rotator's admin connection

    def close(self) -> None:
        for closer in self.closers:
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
    for name, value in overrides.items():  # a misspelt override fails here, not later as a missing collaborator
        if name not in Services.__dataclass_fields__:
            raise TypeError(f"build_services() got an unknown override {name!r}")
        setattr(services, name, value)
    from govern.secrets import wire as wire_secrets

    wire_secrets(services, store=secret_store)
    from govern.broker.wiring import build_authorization

    build_authorization(services)
    from govern.broker.upstream import build_upstream_tokens

    services.upstream_tokens = build_upstream_tokens(services)
    from govern.broker.proxy import build_proxy
    from govern.notify import build_notifier

    services.notifier = services.notifier or build_notifier(settings, services.clock)
    services.proxy = services.proxy or build_proxy(services)
    from govern.broker.signing_keys import retire_expired_signing_keys, rotate_signing_key, self_test_signing_key
    from govern.rotation.wiring import wire_rotation
    from govern.store.rotation_runs import SqlRotationRepository

    if services.rotation_repository is None:
        services.rotation_repository = functools.partial(SqlRotationRepository, services.engine, services.sessions)
    wire_rotation(services, rotate=rotate_signing_key, retire_expired=retire_expired_signing_keys,
                  self_test=self_test_signing_key)
    from govern.ops import instrument

    instrument(services)
    return services


def build_store_services(settings: Settings, *, clock: Clock | None = None) -> Services:
    """The database part of `build_services` only: settings, engine, sessions, the shared cache and the clock.

    For command-line reports that read the store and nothing else (`govern secrets status`, `govern log show`):
    wiring the secret store, the broker, the proxy, rotation and the metrics costs a second or more of imports
    on every run, for collaborators such a command never calls (bench/cli.py)."""
    engine = make_engine(settings.database_url)
    return Services(settings=settings, engine=engine, sessions=make_session_factory(engine),
                    cache=_shared_cache(settings, engine), clock=clock or SystemClock())


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
    services.metric_readers = readers
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
