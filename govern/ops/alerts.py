"""The alert conditions of deploy/prometheus/alerts.yml, evaluated by `govern worker` for users without
Prometheus (issue #9), and posted through the notifier (govern/notify.py: an HMAC-signed webhook, or the log).

`evaluate` is pure: state readings in, the conditions that hold out. `decide` is the de-duplication: a
condition is sent once, when it starts to hold, and once more ("alert.resolved") when it clears.
`check_alerts(services, now)` reads the state, and keeps the set of active conditions in the shared cache, so
several workers (or a restarted one) never send the same alert twice: a cache `add` elects the sender.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from govern.broker.proxy import breaker_states
from govern.domain.expiry import Forecast, due_for_alert, whole_days
from govern.ops import state
from govern.ops.observe import labels
from govern.rotation.machine import PARKED
from govern.store import state_metrics
from govern.store.expiry import read_forecast
from govern.store.tables import Decision, RotationRun, SecretRef

log = logging.getLogger("govern.ops.alerts")
ACTIVE_INDEX = "ops:alerts:active"


@dataclass(frozen=True)
class Thresholds:
    """The same thresholds as deploy/prometheus/alerts.yml."""
    failure_ratio: float = 0.2
    min_calls: int = 10  # a spike needs traffic: 2 failures out of 3 calls is not one
    window: dt.timedelta = dt.timedelta(minutes=5)
    dlq_depth: int = 10
    budget_ratio: float = 0.8
    expiry_days: float = 30  # GOVERN_EXPIRY_ALERT_DAYS: alert this long before an item expires (docs/expiry.md)


@dataclass(frozen=True)
class Readings:
    calls: dict[str, tuple[int, int]] = field(default_factory=dict)  # system -> (calls, failed) in the window
    breakers: dict[str, str] = field(default_factory=dict)  # system -> closed | half_open | open
    dlq_depth: int = 0
    budgets: dict[str, float] = field(default_factory=dict)  # system -> share of today's budget used
    parked_rotations: tuple[str, ...] = ()  # secrets whose last run is parked and not acknowledged
    overdue_secrets: int = 0
    ready: dict[str, bool] = field(default_factory=dict)  # readiness check -> passes
    expiries: tuple[Forecast, ...] = ()  # what expires, with days left (govern.domain.expiry)


@dataclass(frozen=True)
class Condition:
    key: str  # stable identity, for de-duplication
    event: str
    payload: dict[str, Any]


def evaluate(readings: Readings, thresholds: Thresholds = Thresholds()) -> list[Condition]:
    """Which alert conditions hold, in a stable order."""
    out: list[Condition] = []
    for system, (calls, failed) in sorted(readings.calls.items()):
        if calls >= thresholds.min_calls and failed / calls > thresholds.failure_ratio:
            out.append(Condition(f"failure_rate:{system}", "alert.failure_rate", {
                "system": system, "calls": calls, "failed": failed, "ratio": round(failed / calls, 3),
                "window_seconds": int(thresholds.window.total_seconds()), "runbook": "docs/runbooks/upstream-down.md"}))
    for system, circuit in sorted(readings.breakers.items()):
        if circuit == "open":
            out.append(Condition(f"circuit_open:{system}", "alert.circuit_open", {
                "system": system, "runbook": "docs/runbooks/upstream-down.md"}))
    if readings.dlq_depth > thresholds.dlq_depth:
        out.append(Condition("dlq_depth", "alert.dlq_depth", {
            "depth": readings.dlq_depth, "threshold": thresholds.dlq_depth, "runbook": "docs/runbooks/dlq-growing.md"}))
    for system, ratio in sorted(readings.budgets.items()):
        if ratio >= thresholds.budget_ratio:
            out.append(Condition(f"api_budget:{system}", "alert.api_budget", {
                "system": system, "used_ratio": round(ratio, 3), "threshold": thresholds.budget_ratio,
                "runbook": "docs/runbooks/upstream-down.md"}))
    for secret in sorted(readings.parked_rotations):
        out.append(Condition(f"rotation_parked:{secret}", "alert.rotation_failed", {
            "secret": secret, "runbook": "docs/runbooks/rotation-failed.md"}))
    if readings.overdue_secrets > 0:
        out.append(Condition("secrets_overdue", "alert.secrets_overdue", {
            "count": readings.overdue_secrets, "runbook": "docs/runbooks/rotation-failed.md"}))
    for f in due_for_alert(list(readings.expiries), thresholds.expiry_days):
        # One alert per item: the key names the item, not the days left, so it is sent once and resolved when the
        # item is renewed (a later date, a new token) beyond the lead time.
        out.append(Condition(f"expiry:{f.item.key}", "alert.expiry", {
            "kind": f.item.kind, "credential": f.item.credential, "subject": f.item.subject,
            "expires_at": f.item.expires_at.isoformat(), "days_left": whole_days(f.days_left),
            "lead_days": thresholds.expiry_days, "rotation_scheduled": f.item.rotation,
            "runbook": "docs/expiry.md"}))
    for check, passes in sorted(readings.ready.items()):
        if not passes:
            out.append(Condition(f"not_ready:{check}", "alert.not_ready", {
                "check": check, "runbook": "docs/runbooks/vault-down.md" if check == "secret_store" else None}))
    return out


def decide(conditions: list[Condition], active: set[str]) -> tuple[list[Condition], list[str]]:
    """(conditions to send now: they were not active, keys that cleared: active but no longer holding)."""
    holding = {c.key for c in conditions}
    return [c for c in conditions if c.key not in active], sorted(active - holding)


# --- reading the state (the worker's side) ---------------------------------------------------------


def read_state(services, now: dt.datetime, thresholds: Thresholds = Thresholds()) -> Readings:
    systems = labels(services).named_credentials
    calls: dict[str, list[int]] = {}
    with services.sessions() as s:
        rows = s.execute(sa.select(col(Decision.named_credential), sa.func.count(),
                                   sa.func.sum(sa.case((col(Decision.outcome) == "error", 1), else_=0)))
                         .where(col(Decision.at) >= now - thresholds.window, col(Decision.allowed).is_(True),
                                col(Decision.action).in_(("token", "proxy")))
                         .group_by(Decision.named_credential)).all()
    for named_credential, n, failed in rows:
        system = systems.get(named_credential, ("unknown", ""))[0]
        totals = calls.setdefault(system, [0, 0])
        totals[0] += int(n)
        totals[1] += int(failed or 0)
    due = state_metrics.secrets_due(services.sessions, now)
    return Readings(
        calls={k: (v[0], v[1]) for k, v in calls.items()},
        breakers={b["system"]: b["state"] for b in _safe(lambda: _breakers(services), [])},
        dlq_depth=int(state.dlq_depth(services.sessions)[()]),
        budgets={k[0]: v for k, v in _safe(lambda: state.budgets(services), {}).items()},
        parked_rotations=tuple(_parked(services.sessions)),
        overdue_secrets=int(due[("overdue",)]),
        ready=_ready(services),
        expiries=tuple(_safe(lambda: read_forecast(services.sessions, now), [])),
    )


def _safe(read, default):
    try:
        return read()
    except Exception:  # noqa: BLE001 - an unreadable source (the cache is down) must not hide the others
        log.warning("alert source unreadable", exc_info=True)
        return default


def _breakers(services):
    return breaker_states(services.proxy, sessions=services.sessions, cache=services.cache, clock=services.clock)


def _parked(sessions) -> list[str]:
    with sessions() as s:
        rows = s.execute(sa.select(col(SecretRef.external_id), col(RotationRun.steps))
                         .join(SecretRef, col(SecretRef.id) == col(RotationRun.secret_ref_id))
                         .where(col(RotationRun.state) == PARKED, col(RotationRun.dry_run).is_(False))).all()
    return sorted({name for name, steps in rows if not any(st.get("step") == "acknowledge" for st in steps or [])})


def _ready(services) -> dict[str, bool]:
    results = {}
    for name, check in services.health_checks.items():
        try:
            check()
            results[name] = True
        except Exception:  # noqa: BLE001 - a failing check is the reading
            results[name] = False
    return results


def check_alerts(services, now: dt.datetime | None = None, thresholds: Thresholds | None = None) -> dict[str, list]:
    """Evaluate the conditions and notify: each condition once when it starts to hold, and once when it clears.
    Returns {"sent": [keys], "resolved": [keys], "failed": [keys]} (a failed send is retried next time).
    Without `thresholds`, the defaults with the expiry lead time of the settings (GOVERN_EXPIRY_ALERT_DAYS)."""
    now = now or services.clock.now()
    if thresholds is None:
        thresholds = Thresholds(expiry_days=getattr(services.settings, "expiry_alert_days", Thresholds.expiry_days))
    notifier = services.notifier
    cache = services.cache
    conditions = evaluate(read_state(services, now, thresholds), thresholds)
    raw = cache.get(ACTIVE_INDEX)
    active = set(json.loads(raw)) if raw else set()
    fresh, cleared = decide(conditions, active)
    report: dict[str, list] = {"sent": [], "resolved": [], "failed": []}
    for condition in fresh:
        if not cache.add(f"ops:alert:{condition.key}", b"1"):
            continue  # another worker sent it
        try:
            notifier.notify(condition.event, {**condition.payload, "alert": condition.key, "at": now.isoformat()})
            report["sent"].append(condition.key)
        except Exception as exc:  # noqa: BLE001 - retried on the next check
            cache.delete(f"ops:alert:{condition.key}")
            report["failed"].append(condition.key)
            log.error("alert could not be sent", extra={"alert": condition.key, "exc_type": type(exc).__name__})
    for key in cleared:
        cache.delete(f"ops:alert:{key}")
        try:
            notifier.notify("alert.resolved", {"alert": key, "at": now.isoformat()})
            report["resolved"].append(key)
        except Exception as exc:  # noqa: BLE001 - a lost "resolved" is not worth a retry loop
            log.error("alert resolution could not be sent", extra={"alert": key, "exc_type": type(exc).__name__})
    holding = {c.key for c in conditions} - set(report["failed"])
    cache.set(ACTIVE_INDEX, json.dumps(sorted(holding)).encode())
    return report
