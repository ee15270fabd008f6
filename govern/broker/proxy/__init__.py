"""The callout proxy: calls by named credential with the credential injected (see service.py)."""
from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from govern.broker.proxy.breaker import CircuitBreakers
from govern.broker.proxy.service import ProxyService
from govern.broker.proxy.transport import MAX_CONNECTIONS, MAX_DECODED_BYTES, Urllib3Transport
from govern.domain.resilience import BreakerPolicy, parse_stored
from govern.store.tables import ExternalCredential, NamedCredential, System


def build_proxy(services) -> Any:
    settings = getattr(services, "settings", None)
    transport = Urllib3Transport(
        max_connections=getattr(settings, "proxy_max_connections_per_origin", MAX_CONNECTIONS),
        max_decoded_bytes=getattr(settings, "proxy_max_decoded_bytes", MAX_DECODED_BYTES))
    proxy = ProxyService(services, transport=transport)
    services.closers.append(proxy.transport.close)
    return proxy


def breaker_states(services) -> list[dict[str, Any]]:
    """Every system's circuit state, for the API and for metrics (`state` is closed, open or half_open)."""
    states = []
    with services.sessions() as session:
        rows = session.exec(select(System).order_by(System.external_id)).all()
        for system in rows:
            cfg_row = session.exec(select(NamedCredential).join(
                ExternalCredential, col(NamedCredential.credential_id) == col(ExternalCredential.id)).where(
                ExternalCredential.system_id == system.id)).first()
            cfg = parse_stored(BreakerPolicy, cfg_row.circuit_breaker if cfg_row else None,
                               f"named credential {cfg_row.external_id if cfg_row else '-'}: circuit_breaker")
            state = CircuitBreakers(services.cache, services.clock).state(system.external_id, cfg)
            states.append({"id": system.id, **state})
    return states


__all__ = ["build_proxy", "breaker_states"]
