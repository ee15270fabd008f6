"""Bulkheads: a per-system limit on the proxy's concurrent upstream calls (seed practice 2, design for
failure; the pattern from Nygard's "Release It!").

A govern process has a fixed number of request threads. Without a limit, one slow system ties up every one
of them (each waits up to the named credential's timeout, times the retries) and calls to healthy systems
queue behind it. With one, the slow system gets at most its slots; a call that finds them all taken waits
briefly (`wait`, a slot usually frees within it) and is then refused with 503 `upstream_concurrency_limit`
and `Retry-After`, so the caller backs off.

The limit is per process, like the threads it protects: the system's contract `max_concurrent_calls`
(governance.yaml), else the default (GOVERN_PROXY_MAX_CONCURRENT_CALLS, 32). A slot is held from the first
upstream attempt until the answer is read (for a streamed answer, until the stream is closed).
`/metrics` shows each system's limit, the calls in flight and the refusals.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from govern.broker.proxy.errors import BulkheadFull

DEFAULT_LIMIT = 32
DEFAULT_WAIT = 0.5  # seconds


@dataclass
class _Compartment:
    limit: int
    semaphore: threading.BoundedSemaphore
    in_flight: int = 0


class Slot:
    """One held slot; `release` is idempotent (the error path and a closed stream may both call it)."""

    def __init__(self, bulkheads: Bulkheads, system: str, compartment: _Compartment):
        self._bulkheads = bulkheads
        self._system = system
        self._compartment = compartment
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._bulkheads._release(self._system, self._compartment)


class Bulkheads:
    def __init__(self, default_limit: int = DEFAULT_LIMIT, wait: float = DEFAULT_WAIT, metrics=None):
        self.default_limit = default_limit
        self.wait = wait
        self.metrics = metrics
        self._guard = threading.Lock()
        self._compartments: dict[str, _Compartment] = {}

    def _compartment(self, system: str, limit: int) -> _Compartment:
        with self._guard:
            found = self._compartments.get(system)
            if found is None or found.limit != limit:
                # A changed contract takes effect for new calls; calls holding the old semaphore finish on it.
                found = _Compartment(limit, threading.BoundedSemaphore(limit))
                self._compartments[system] = found
                if self.metrics is not None:
                    self.metrics.proxy_concurrency_limit.labels(system=system).set(limit)
            return found

    def acquire(self, system: str, limit: int | None) -> Slot:
        limit = limit if limit and limit > 0 else self.default_limit
        compartment = self._compartment(system, limit)
        if not compartment.semaphore.acquire(timeout=self.wait):
            if self.metrics is not None:
                self.metrics.proxy_bulkhead_rejections.labels(system=system).inc()
            raise BulkheadFull(system, limit)
        with self._guard:
            compartment.in_flight += 1
        if self.metrics is not None:
            self.metrics.proxy_in_flight.labels(system=system).inc()
        return Slot(self, system, compartment)

    def _release(self, system: str, compartment: _Compartment) -> None:
        with self._guard:
            compartment.in_flight -= 1
        compartment.semaphore.release()
        if self.metrics is not None:
            self.metrics.proxy_in_flight.labels(system=system).dec()

    def in_flight(self, system: str) -> int:
        with self._guard:
            found = self._compartments.get(system)
            return found.in_flight if found else 0
