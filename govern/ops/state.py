"""Gauges read from shared state at scrape time (govern.metrics.StateCollector), so every gunicorn worker
and the worker process report the same truth: circuit breakers and API budgets (in the shared cache),
rotations and the dead-letter queue (in the database), and this process's decision-log backlog.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col

from govern.store.tables import Decision, RotationRun, System, ExternalCredential, Principal
from govern.broker.proxy import breaker_states
from govern.metrics import BREAKER_STATES
from govern.broker.proxy.budget import DailyBudget
from govern.rotation.machine import TERMINAL
from govern.store.proxy_tables import DeadLetter
from govern.store.expiry import read_forecast
from govern.store.revocation_queue import RevocationQueueRepo


def add_state_readers(services) -> None:
    readers = services.metric_readers
    if readers is None:
        return
    readers.update({
        "govern_circuit_breaker_state": (
            "Circuit breaker per system: 0 closed, 1 half-open, 2 open.", ["system"], lambda: breakers(services)),
        "govern_api_budget_used_ratio": (
            "Share of the system's daily API budget used today.", ["system"], lambda: budgets(services)),
        "govern_rotations_total": (
            "Finished rotation runs by rotator and outcome (finished, parked, cancelled); dry runs excluded.",
            ["rotator", "outcome"], lambda: rotations(services.sessions)),
        "govern_expiry_days": (
            "Days until a client secret, refresh token or certificate expires (negative once expired; docs/expiry.md).",
            ["kind", "credential", "subject"], lambda: expiry_days(services)),
        "govern_dlq_depth": ("Proxied calls in the dead-letter queue.", [], lambda: dlq_depth(services.sessions)),
        "govern_principals_needing_reconnect": (
            "Principals whose stored refresh token the upstream refused (no upstream call until reconnected).",
            ["credential"], lambda: principals_needing_reconnect(services.sessions)),
        "govern_upstream_revocation_failures_total": (
            "Upstream token revocations (govern offboard and the worker's queue, RFC 7009) that failed after their "
            "retries, per credential.",
            ["credential"], lambda: revocation_failures(services.sessions)),
        "govern_upstream_revocations": (
            "Queued upstream token revocations (RFC 7009) by state: pending (the worker retries them), failed "
            "(alerted; `govern revocations --retry-failed`).",
            ["state"], lambda: revocation_queue(services.sessions)),
        "govern_decision_log_queue_depth": ("Decision records of this process waiting to be written.", [],
                                            lambda: {(): float(_backlog(services)[0])}),
        "govern_decision_log_lag_seconds": ("Age of this process's oldest decision record not yet written.", [],
                                            lambda: {(): float(_backlog(services)[1])}),
    })


def breakers(services) -> dict[tuple, float]:
    states = breaker_states(services.proxy, sessions=services.sessions, cache=services.cache, clock=services.clock)
    return {(b["system"],): float(BREAKER_STATES.get(b["state"], 0)) for b in states}


def budgets(services) -> dict[tuple, float]:
    counter = DailyBudget(services.cache, services.clock, background=False)
    with services.sessions() as s:
        rows = s.execute(sa.select(col(System.external_id), col(System.daily_api_budget))
                         .where(col(System.daily_api_budget) > 0)).all()
    return {(system,): counter.used(system) / budget for system, budget in rows}


def rotations(sessions) -> dict[tuple, float]:
    with sessions() as s:
        rows = s.execute(sa.select(col(RotationRun.rotator), col(RotationRun.state), sa.func.count())
                         .where(col(RotationRun.state).in_(sorted(TERMINAL)), col(RotationRun.dry_run).is_(False))
                         .group_by(col(RotationRun.rotator), col(RotationRun.state))).all()
    return {(rotator, state): float(n) for rotator, state, n in rows}


def principals_needing_reconnect(sessions) -> dict[tuple, float]:
    """Per credential; a credential whose principals are all fine reports 0, so the series exists."""
    with sessions() as s:
        rows = s.execute(sa.select(col(ExternalCredential.external_id), sa.func.count(col(Principal.needs_reconnect_at)))
                         .join(Principal, col(Principal.credential_id) == ExternalCredential.id)
                         .where(col(ExternalCredential.protocol) == "oauth2_refresh_token")
                         .group_by(ExternalCredential.external_id)).all()
    return {(credential,): float(n) for credential, n in rows}


def expiry_days(services) -> dict[tuple, float]:
    return {(f.item.kind, f.item.credential, f.item.subject): round(f.days_left, 3)
            for f in read_forecast(services.sessions, services.clock.now())}


def revocation_failures(sessions) -> dict[tuple, float]:
    """From the decision records of `govern offboard` (govern.broker.upstream.revocation), so every process agrees."""
    with sessions() as s:
        rows = s.execute(sa.select(col(Decision.resource_object), sa.func.count())
                         .where(col(Decision.action) == "offboard", col(Decision.outcome) == "error")
                         .group_by(col(Decision.resource_object))).all()
    return {(credential or "",): float(n) for credential, n in rows}


def revocation_queue(sessions) -> dict[tuple, float]:
    counts = RevocationQueueRepo(sessions, row_locks=False).counts()
    return {(state,): float(counts.get(state, 0)) for state in ("pending", "failed")}


def dlq_depth(sessions) -> dict[tuple, float]:
    with sessions() as s:
        return {(): float(s.execute(sa.select(sa.func.count()).select_from(DeadLetter)).scalar_one())}


def _backlog(services) -> tuple[int, float]:
    log = services.decision_log
    return log.backlog() if hasattr(log, "backlog") else (0, 0.0)
