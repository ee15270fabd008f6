"""Per-operation observation: one place that times a broker or proxy operation, counts its outcome in
/metrics, binds the operation's fields to every log line written inside it, and writes one summary line
(inside an HTTP request, that line is the request line of govern.app: one line per request).

Labels are bounded (seed practice 17; Prometheus "use labels with bounded cardinality"): `system` and
`named_credential` are taken from the landscape, never from the request, so a caller asking for
`/named-credentials/<random>/token` counts under `unknown`, not under a new series.
"""
from __future__ import annotations

import contextvars
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterator

import sqlalchemy as sa
from sqlmodel import col

from govern.errors import GovernError
from govern.logs import correlation, current_correlation_id
from govern.store.tables import ExternalCredential, IntegrationUser, NamedCredential, System

log = logging.getLogger("govern.ops")
UNKNOWN = "unknown"
_current: contextvars.ContextVar[Operation | None] = contextvars.ContextVar("govern_operation", default=None)


@dataclass
class Labels:
    """named credential -> (system, credential), integration user -> its source system."""
    named_credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    source_systems: dict[str, str] = field(default_factory=dict)


def _read_labels(sessions) -> Labels:
    with sessions() as s:
        ncs = s.execute(sa.select(col(NamedCredential.external_id), col(System.external_id), col(ExternalCredential.external_id))
                        .join(ExternalCredential, col(ExternalCredential.id) == NamedCredential.credential_id)
                        .join(System, col(System.id) == ExternalCredential.system_id)).all()
        users = s.execute(sa.select(col(IntegrationUser.external_id), col(System.external_id))
                          .join(System, col(System.id) == IntegrationUser.source_system_id)).all()
    return Labels({nc: (system, cred) for nc, system, cred in ncs}, dict(users))


def labels(services) -> Labels:
    """Built once per landscape snapshot (re-read when the landscape changes), so the hot path adds no query."""
    landscape = services.landscape
    if landscape is None:
        return _read_labels(services.sessions)
    return landscape.current().derive("ops.labels", lambda: _read_labels(services.sessions))


_PROXY_FAILURES = {"circuit_open": "circuit_open", "upstream_unavailable": "upstream_unavailable",
                   "upstream_timeout": "upstream_unavailable", "maintenance_window": "maintenance",
                   "budget_exhausted": "budget_exhausted", "upstream_rate_limited": "rate_limited",
                   "system_rate_limited": "rate_limited",
                   "rate_limited": "rate_limited"}


def classify(kind: str, exc: BaseException) -> str:
    """A bounded outcome for a failed operation: denied and not_found are the caller's; the rest are failures
    (for a proxied call, named after the proxy's error so an operator sees an open circuit at once)."""
    if isinstance(exc, GovernError):
        if exc.status in (401, 403):
            return "denied"
        if exc.status == 404:
            return "not_found"
        if exc.status in (400, 413, 415, 422):
            return "invalid_request"
        if kind == "proxy":
            return _PROXY_FAILURES.get(exc.code, "error")
    return "error"


@dataclass
class Operation:
    kind: str  # token | proxy
    system: str
    named_credential: str
    credential: str
    source_system: str | None = None
    integration_user: str | None = None
    status: int | None = None

    def fields(self, outcome: str | None = None) -> dict[str, Any]:
        out = {"operation": self.kind, "target_system": self.system, "named_credential": self.named_credential,
               "source_system": self.source_system}
        if outcome is not None:
            out["outcome"] = outcome
        return out


def note_caller(integration_user: str) -> None:
    """Called by the broker once it has authenticated the caller: the source system joins the log lines."""
    op = _current.get()
    if op is not None:
        op.integration_user = integration_user


@contextmanager
def operation(services, kind: str, named_credential: str, *, summary: dict | None = None) -> Iterator[Operation]:
    """Time one token or proxy operation; count it in /metrics by outcome and log one summary line.

    With `summary`, the summary fields are put there for the caller's own request line instead (the HTTP
    edges: the token route and the proxy's WSGI edge); without it, they are logged as a line of their own.

    Token outcomes: allowed, denied, not_found, invalid_request, error. Proxy outcomes: success (upstream
    < 400), client_error (upstream 4xx), upstream_error (upstream 5xx), denied, not_found, invalid_request,
    and the failures of `_PROXY_FAILURES`."""
    try:
        found = labels(services).named_credentials.get(named_credential)
    except Exception:  # noqa: BLE001 - labels must never fail the request
        found = None
    system, credential = found or (UNKNOWN, UNKNOWN)
    op = Operation(kind, system, named_credential if found else UNKNOWN, credential)
    token = _current.set(op)
    started = time.perf_counter()
    outcome = "error"
    try:
        with correlation(current_correlation_id(), **op.fields()):
            try:
                yield op
                outcome = _success_outcome(kind, op.status)
            except BaseException as exc:
                outcome = classify(kind, exc)
                raise
            finally:
                if op.integration_user:
                    try:
                        op.source_system = labels(services).source_systems.get(op.integration_user)
                    except Exception:  # noqa: BLE001, S110 - a label must never fail the request
                        pass
                _record(services, op, outcome, time.perf_counter() - started, summary)
    finally:
        _current.reset(token)


def _success_outcome(kind: str, status: int | None) -> str:
    if kind == "token":
        return "allowed"
    if status is None or status < 400:
        return "success"
    return "client_error" if status < 500 else "upstream_error"


def _record(services, op: Operation, outcome: str, seconds: float, summary: dict | None = None) -> None:
    metrics = services.metrics
    if metrics is not None:
        counter, histogram = ((metrics.token_requests, metrics.token_latency) if op.kind == "token"
                              else (metrics.proxy_requests, metrics.proxy_latency))
        counter.labels(system=op.system, named_credential=op.named_credential, outcome=outcome).inc()
        histogram.labels(system=op.system, named_credential=op.named_credential).observe(seconds)
    fields = op.fields(outcome)
    if op.status is not None:
        fields["upstream_status"] = op.status
    if summary is not None:
        # The HTTP edge puts these on its one request line (govern.app, the proxy's WSGI edge), with the
        # whole request's duration.
        summary.update(fields)
        return
    fields["duration_ms"] = round(seconds * 1000, 2)
    log.info(f"{op.kind} {outcome}", extra=fields)


class InstrumentedTokenHttp:
    """Wraps the upstream token endpoint transport (govern.broker.upstream.http.TokenHttp): every call to an
    upstream token endpoint is counted in govern_upstream_refresh_total by outcome."""

    def __init__(self, inner, services):
        self.inner = inner
        self.services = services

    def post_form(self, url, data, *, basic_auth, timeout):
        op = _current.get()
        system, credential = (op.system, op.credential) if op else (UNKNOWN, UNKNOWN)
        outcome = "error"
        try:
            answer = self.inner.post_form(url, data, basic_auth=basic_auth, timeout=timeout)
            outcome = _refresh_outcome(answer)
            return answer
        except GovernError as exc:
            outcome = "unreachable" if exc.status in (502, 503, 504) else "error"
            raise
        finally:
            metrics = self.services.metrics
            if metrics is not None:
                metrics.upstream_refreshes.labels(system=system, credential=credential, outcome=outcome).inc()
            log.info("upstream token call", extra={"target_system": system, "credential": credential,
                                                   "outcome": outcome})

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _refresh_outcome(answer) -> str:
    """RFC 6749 section 5.1/5.2: 200 without `error` is a success; the rest by status and error code."""
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 200 and not body.get("error"):
        return "success"
    if answer.status == 429:
        return "rate_limited"
    if answer.status >= 500:
        return "error"
    if body.get("error") in ("invalid_grant", "invalid_client"):
        return body["error"]
    return "refused"
