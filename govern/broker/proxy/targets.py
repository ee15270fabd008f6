"""A named credential with its external credential and system, as one frozen value: what the proxy reads.

Built for every named credential when the landscape snapshot loads (govern.broker.landscape), from the same
rows as the broker's views, and reloaded with it when the stored landscape version moves.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from govern.domain.maintenance import MaintenanceWindow
from govern.domain.resilience import BreakerPolicy, RetryPolicy, parse_stored

if TYPE_CHECKING:
    from govern.store.tables import ExternalCredential, NamedCredential, Principal, System


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


def build_target(nc: NamedCredential, cred: ExternalCredential, system: System,
                 principals: Iterable[Principal]) -> Target:
    """The proxy's view of one named credential, from the rows the landscape snapshot loaded
    (govern.broker.landscape). A stored setting that does not parse raises ConfigurationError naming it."""
    return Target(
        named_credential=nc.external_id, url=nc.url, api_type=nc.api_type, timeout=float(nc.timeout_seconds),
        retry=parse_stored(RetryPolicy, nc.retry, f"named credential {nc.external_id}: retry"),
        breaker=parse_stored(BreakerPolicy, nc.circuit_breaker, f"named credential {nc.external_id}: circuit_breaker"),
        allowed_methods=tuple(m.upper() for m in nc.allowed_methods or ()),
        allowed_paths=tuple(nc.allowed_paths or ()), during_maintenance=nc.during_maintenance,
        max_body_bytes=int(nc.max_body_bytes), credential=cred.external_id, protocol=cred.protocol,
        header_name=cred.header_name, system=system.external_id,
        system_id=system.id or 0, daily_api_budget=system.daily_api_budget,
        maintenance_windows=tuple(parse_stored(list[MaintenanceWindow], system.maintenance_windows,
                                               f"system {system.external_id}: maintenance_windows")),
        max_concurrent_calls=(system.contract or {}).get("max_concurrent_calls"),
        principals={p.name: p.subject for p in principals},
    )
