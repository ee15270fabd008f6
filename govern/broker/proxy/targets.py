"""Load a named credential with its external credential and system into one frozen value.

Kept for a few seconds in-process: the proxy's hot path must not query the database on every call,
and configuration changes show up within `ttl` seconds.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlmodel import select

from govern.broker.proxy.errors import NamedCredentialNotFound
from govern.domain.maintenance import MaintenanceWindow
from govern.domain.resilience import BreakerPolicy, RetryPolicy, parse_stored


@dataclass(frozen=True)
class Target:
    named_credential: str
    url: str
    api_type: str
    timeout: float
    retry: RetryPolicy
    breaker: BreakerPolicy
    allowed_methods: tuple[str, ...]
    allowed_paths: tuple[str, ...]
    during_maintenance: str
    max_body_bytes: int
    credential: str
    protocol: str
    header_name: str | None
    system: str
    system_id: int
    daily_api_budget: int | None
    maintenance_windows: tuple[MaintenanceWindow, ...]
    max_concurrent_calls: int | None = None  # the system contract's bulkhead (None: the default)
    principals: dict[str, str | None] = field(default_factory=dict)  # name -> upstream subject


def load_target(sessions, name: str) -> Target:
    from govern.store.tables import ExternalCredential, NamedCredential, Principal, System

    with sessions() as session:
        nc = session.exec(select(NamedCredential).where(NamedCredential.external_id == name)).first()
        if nc is None:
            raise NamedCredentialNotFound(f"no named credential {name!r}")
        cred = session.get(ExternalCredential, nc.credential_id)
        system = session.get(System, cred.system_id)
        principals = session.exec(select(Principal).where(Principal.credential_id == cred.id)).all()
        return Target(
            named_credential=nc.external_id, url=nc.url, api_type=nc.api_type, timeout=float(nc.timeout_seconds),
            retry=parse_stored(RetryPolicy, nc.retry, f"named credential {nc.external_id}: retry"),
            breaker=parse_stored(BreakerPolicy, nc.circuit_breaker, f"named credential {nc.external_id}: circuit_breaker"),
            allowed_methods=tuple(m.upper() for m in nc.allowed_methods or ()),
            allowed_paths=tuple(nc.allowed_paths or ()), during_maintenance=nc.during_maintenance,
            max_body_bytes=int(nc.max_body_bytes), credential=cred.external_id, protocol=cred.protocol,
            header_name=cred.header_name, system=system.external_id,
            system_id=system.id, daily_api_budget=system.daily_api_budget,
            maintenance_windows=tuple(parse_stored(list[MaintenanceWindow], system.maintenance_windows,
                                                   f"system {system.external_id}: maintenance_windows")),
            max_concurrent_calls=(system.contract or {}).get("max_concurrent_calls"),
            principals={p.name: p.subject for p in principals},
        )


class TargetCache:
    """Named credential -> Target, kept `ttl` seconds. When an entry expires, one thread reloads it while
    the others go on with the previous value (a few milliseconds older): no stampede of identical queries.
    A name never loaded, or one that failed to load, is loaded by the caller itself."""

    def __init__(self, sessions, ttl: float = 5.0):
        self.sessions = sessions
        self.ttl = ttl
        self._items: dict[str, tuple[float, Target]] = {}
        self._loading: set[str] = set()
        self._lock = threading.Lock()

    def get(self, name: str) -> Target:
        now = time.monotonic()
        item = self._items.get(name)
        if item and item[0] > now:
            return item[1]
        with self._lock:
            if item is not None and name in self._loading:
                return item[1]  # another thread is reloading it
            self._loading.add(name)
        try:
            target = load_target(self.sessions, name)
        finally:
            with self._lock:
                self._loading.discard(name)
        with self._lock:
            self._items[name] = (time.monotonic() + self.ttl, target)
        return target

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
