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
from dataclasses import dataclass
from typing import Any

from govern.broker.proxy.errors import CircuitOpen
from govern.domain.resilience import BreakerPolicy, parse_stored
from govern.ports import BreakerSettings, Cache, Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class Admission:
    """What `before_call` saw when it let a call through.

    `probe`: this call is the half-open probe. `clean`: the circuit had no open record and no failure count, so
    a success has nothing to reset (the common case: one shared-state read per call, no write)."""
    probe: bool = False
    clean: bool = False


NOT_ADMITTED = Admission()  # a caller that never asked (e.g. a test): a success resets, as before


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

    def before_call(self, system: str, cfg: BreakerPolicy) -> Admission:
        """Raise CircuitOpen, or admit the call (as the half-open probe, or plainly).

        One shared-state read: the `open` record and the failure count together. Whether to fail fast is decided
        from the `open` record alone, as state() decides; the count tells `record_success` whether a success has
        anything to reset (before, it read the count again after every call)."""
        raw_open, failures = self.cache.get_many([self._k(system, "open"), self._k(system, "failures")])
        if not raw_open:
            return Admission(probe=False, clean=failures is None)
        remaining = self._remaining(json.loads(raw_open), cfg)
        if remaining > 0:
            raise CircuitOpen(system, int(remaining + 0.999))
        # half-open: exactly one probe at a time, across processes.
        if self.cache.add(self._k(system, "probe"), b"1", ttl=max(cfg.reset, 1.0)):
            return Admission(probe=True)
        raise CircuitOpen(system, 1)

    def release_probe(self, system: str) -> None:
        """The elected probe never reached the upstream (refused by a later check): let another probe run."""
        self.cache.delete(self._k(system, "probe"))

    def record_success(self, system: str, admission: Admission = NOT_ADMITTED) -> None:
        """The upstream answered: close the circuit and forget the failures, unless there was nothing to reset
        when the call was admitted (a failure another process counts meanwhile lapses with its window)."""
        if admission.probe or not admission.clean:
            self.cache.delete(self._k(system, "open"))
            self.cache.delete(self._k(system, "failures"))
            self.cache.delete(self._k(system, "probe"))

    def record_failure(self, system: str, cfg: BreakerPolicy, admission: Admission = NOT_ADMITTED) -> None:
        if admission.probe:
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
