"""A circuit breaker per system (Nygard, "Release It!"; Fowler, "CircuitBreaker"): closed, open, half-open.

State lives in the shared cache (Redis across processes, memory in one process) so every govern
process sees the same circuit. Time comes from the injected clock.

The settings are govern.domain.resilience.BreakerPolicy (governance.yaml's `circuit_breaker:`).
- closed: calls pass; failures within `window` seconds are counted; at `failures` it opens.
- open: calls fail fast with CircuitOpen until `reset` seconds have passed.
- half-open: one probe call is let through (a cache `add` elects it across processes); success
  closes the circuit, failure opens it again.
"""
from __future__ import annotations

import json
from typing import Any

from govern.broker.proxy.errors import CircuitOpen
from govern.domain.resilience import BreakerPolicy, parse_stored
from govern.ports import BreakerSettings, Cache, Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreakers:
    def __init__(self, cache: Cache, clock: Clock):
        self.cache = cache
        self.clock = clock

    def _k(self, system: str, part: str) -> str:
        return f"proxy:breaker:{system}:{part}"

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _opened(self, system: str) -> dict | None:
        raw = self.cache.get(self._k(system, "open"))
        return json.loads(raw) if raw else None

    def _remaining(self, opened: dict, cfg: BreakerPolicy) -> float:
        """Seconds the circuit stays open; zero or less: half-open."""
        return opened["at"] + cfg.reset - self._now()

    def state(self, system: str, cfg: BreakerPolicy) -> dict[str, Any]:
        opened = self._opened(system)
        failures = int(self.cache.get(self._k(system, "failures")) or 0)
        if not opened:
            return {"system": system, "state": CLOSED, "failures": failures, "retry_after": 0}
        remaining = self._remaining(opened, cfg)
        if remaining > 0:
            return {"system": system, "state": OPEN, "failures": failures, "retry_after": int(remaining + 0.999)}
        return {"system": system, "state": HALF_OPEN, "failures": failures, "retry_after": 0}

    def before_call(self, system: str, cfg: BreakerPolicy) -> bool:
        """Raise CircuitOpen, or return True when this call is the half-open probe.

        Decided from the `open` record alone, as state() decides: the failure count only informs a reader
        (GET /api/v1/breakers), and reading it too cost every proxied call a second shared-cache read."""
        opened = self._opened(system)
        if not opened:
            return False
        remaining = self._remaining(opened, cfg)
        if remaining > 0:
            raise CircuitOpen(system, int(remaining + 0.999))
        # half-open: exactly one probe at a time, across processes.
        if self.cache.add(self._k(system, "probe"), b"1", ttl=max(cfg.reset, 1.0)):
            return True
        raise CircuitOpen(system, 1)

    def release_probe(self, system: str) -> None:
        """The elected probe never reached the upstream (refused by a later check): let another probe run."""
        self.cache.delete(self._k(system, "probe"))

    def record_success(self, system: str, probe: bool) -> None:
        if probe or self.cache.get(self._k(system, "failures")) is not None:
            self.cache.delete(self._k(system, "open"))
            self.cache.delete(self._k(system, "failures"))
            self.cache.delete(self._k(system, "probe"))

    def record_failure(self, system: str, cfg: BreakerPolicy, probe: bool) -> None:
        if probe:
            self._open(system, cfg)
            self.cache.delete(self._k(system, "probe"))
            return
        count = self.cache.incr(self._k(system, "failures"), 1, ttl=cfg.window)
        if count >= cfg.failures and not self._opened(system):
            self._open(system, cfg)

    def _open(self, system: str, cfg: BreakerPolicy) -> None:
        # Keep the record a while past the reset timeout so half-open is observable, then let it lapse.
        self.cache.set(self._k(system, "open"), json.dumps({"at": self._now()}).encode(),
                       ttl=cfg.reset * 10 + 3600)


def breaker_report(settings: BreakerSettings, breakers: CircuitBreakers) -> list[dict[str, Any]]:
    """Every system's circuit state, for the API and for metrics (`state` is closed, open or half_open)."""
    states = []
    for system in settings.systems():
        cfg = parse_stored(BreakerPolicy, system.circuit_breaker,
                           f"named credential {system.named_credential or '-'}: circuit_breaker")
        states.append({"id": system.system_id, **breakers.state(system.system, cfg)})
    return states
