"""A named credential with its external credential and system, as one frozen value: what the proxy reads.

Built for every named credential when the landscape snapshot loads (govern.broker.landscape), from the same
typed records as the broker's views (govern.store.landscape_snapshot), and reloaded with it when the stored
landscape version moves.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from govern.domain.maintenance import MaintenanceWindow
from govern.domain.resilience import BreakerPolicy, RetryPolicy
from govern.store.landscape_snapshot import CredentialRecord, NamedCredentialRecord, SystemRecord


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
    rate_limit_per_minute: int | None = None  # the system contract's calls per minute, across govern (None: none)
    principals: dict[str, str | None] = field(default_factory=dict)  # name -> upstream subject


def build_target(nc: NamedCredentialRecord, cred: CredentialRecord, system: SystemRecord,
                 principals: dict[str, str | None]) -> Target:
    """The proxy's view of one named credential, from the typed records the landscape snapshot loaded
    (govern.store.landscape_snapshot validated their stored settings). `principals`: the credential's principal
    names and upstream subjects, one dict shared by the credential's named credentials."""
    return Target(
        named_credential=nc.external_id, url=nc.url, api_type=nc.api_type, timeout=nc.timeout, retry=nc.retry,
        breaker=nc.breaker, allowed_methods=nc.allowed_methods, allowed_paths=nc.allowed_paths,
        during_maintenance=nc.during_maintenance, max_body_bytes=nc.max_body_bytes, credential=cred.external_id,
        protocol=cred.protocol, header_name=cred.header_name, system=system.external_id, system_id=system.id,
        daily_api_budget=system.daily_api_budget, maintenance_windows=system.maintenance_windows,
        max_concurrent_calls=system.max_concurrent_calls, rate_limit_per_minute=system.rate_limit_per_minute,
        principals=principals,
    )
