"""Prometheus metrics (seed practice 17: monitor proactively).

One `Metrics` object per Services, with its own registry, so that tests and several apps in one
process never collide. Counters and histograms are recorded where things happen; gauges that describe
durable state (secrets due, DLQ depth, findings) are read from the database at scrape time by
`StateCollector`, so that every gunicorn worker reports the same truth. With PROMETHEUS_MULTIPROC_DIR
set, counters from all worker processes are aggregated (prometheus_client multiprocess mode).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.token_requests = Counter(
            "govern_token_requests_total", "Upstream token requests by outcome (allowed, denied, error).",
            ["system", "named_credential", "outcome"], registry=r)
        self.token_latency = Histogram(
            "govern_token_request_seconds", "Latency of /token requests.", ["system", "named_credential"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.proxy_requests = Counter(
            "govern_proxy_requests_total", "Proxied calls by outcome.", ["system", "named_credential", "outcome"],
            registry=r)
        self.proxy_latency = Histogram(
            "govern_proxy_request_seconds", "Latency of proxied calls.", ["system", "named_credential"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_refreshes = Counter(
            "govern_upstream_refresh_total",
            "Calls to upstream token endpoints by outcome (success, invalid_grant, invalid_client, rate_limited, refused, "
            "unreachable, error).", ["system", "credential", "outcome"],
            registry=r)
        self.previous_secret_used = Counter(
            "govern_upstream_previous_secret_used_total", "Upstream token requests that succeeded only with the "
            "previous version of a client secret or key (the new one was refused): a wrong new secret, or a "
            "rotation the upstream has not taken yet.", ["credential"], registry=r)
        # The proxy's bulkheads (govern.broker.proxy.bulkhead): per process, like the threads they protect.
        self.proxy_concurrency_limit = Gauge(
            "govern_proxy_concurrency_limit", "Concurrent upstream calls allowed per system, per govern process.",
            ["system"], registry=r, multiprocess_mode="max")
        self.proxy_in_flight = Gauge(
            "govern_proxy_calls_in_flight", "Proxied upstream calls in flight per system.", ["system"], registry=r,
            multiprocess_mode="livesum")
        self.proxy_bulkhead_rejections = Counter(
            "govern_proxy_bulkhead_rejections_total", "Proxied calls refused because the system's bulkhead was full.",
            ["system"], registry=r)
        # Workload identity federation (govern.broker.federation, docs/federation.md).
        self.federation_jwks_fetches = Counter(
            "govern_federation_jwks_fetches_total",
            "Fetches of a trusted issuer's JWKS by outcome: ok, error, or refetch_limited (an unknown kid or an expired "
            "document found within the refetch limit of the last attempt: no fetch made).", ["issuer", "outcome"],
            registry=r)
        self.federation_assertions = Counter(
            "govern_federation_assertions_total",
            "Federated client assertions at /oauth/token by outcome: ok, or the refusal's reason (signature, expired, "
            "replayed, audience, claim, subject, issuer, unknown_key, ...; jwks_unavailable).", ["reason"], registry=r)
        # Breaker state, budget use, rotations, the DLQ and the decision-log backlog are read at scrape time
        # (govern/ops/state.py), so that every process reports the shared truth.

    def add_state_collector(self, collector: StateCollector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            for collector in getattr(self, "_state_collectors", []):
                merged.register(collector)
            return generate_latest(merged)
        return generate_latest(self.registry)


class StateCollector:
    """Gauges read from durable state at scrape time. `readers` map a metric to a function returning
    {label tuple: value}; a reader that fails is skipped, so one broken source never hides the rest.
    A name ending in `_total` is exposed as a counter (a count of durable rows that only grows)."""

    def __init__(self, readers: dict[str, tuple[str, list[str], Callable[[], dict[tuple, float]]]]):
        self.readers = readers

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        for name, (doc, labels, read) in self.readers.items():
            try:
                values = read()
            except Exception:  # noqa: BLE001, S112 - a broken source must not break the scrape
                continue
            family = (CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels) if name.endswith("_total")
                      else GaugeMetricFamily(name, doc, labels=labels))
            for label_values, value in values.items():
                family.add_metric(list(label_values), value)
            yield family
