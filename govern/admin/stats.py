"""Read models for the dashboard, computed with SQL aggregates over the decision, finding, secret and
rotation tables. No Flask here; `now` comes from the services' clock.

Success: a decision whose outcome is allow (allowed, and neither a govern error nor an upstream 5xx); a denial
(outcome deny: policy refused it) is not a failure (outcome error: allowed, but govern or the upstream failed), and the
three are counted apart. p95 latency uses the
nearest-rank method (the value at rank ceil(0.95 n) of the sorted latencies), selected with ORDER BY and
OFFSET so it runs the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import col, select

from govern.store.tables import (Decision, ExternalCredential, Finding, NamedCredential, Principal, RotationRun,
                                 SecretRef, System)

SEVERITIES = ("critical", "high", "medium", "low", "info")
BUDGET_ATTENTION = 0.8  # a system that used more than 80 % of its daily API budget needs attention
FAILURE_ATTENTION = 0.05  # ... and one where more than 5 % of the last 24 hours' decisions failed
FAILED_RUN_STATES = ("failed", "parked")


@dataclass
class SystemStats:
    system: str
    name: str
    volume_24h: int = 0
    successes_24h: int = 0
    denials_24h: int = 0
    failures_24h: int = 0
    p95_ms: float | None = None
    hourly: list[int] = field(default_factory=lambda: [0] * 24)
    calls_today: int = 0
    daily_budget: int | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes_24h / self.volume_24h if self.volume_24h else None

    @property
    def failure_rate(self) -> float | None:
        return self.failures_24h / self.volume_24h if self.volume_24h else None

    @property
    def budget_used(self) -> float | None:
        return self.calls_today / self.daily_budget if self.daily_budget else None

    @property
    def budget_attention(self) -> bool:
        return self.budget_used is not None and self.budget_used > BUDGET_ATTENTION

    @property
    def failure_attention(self) -> bool:
        return self.failure_rate is not None and self.failure_rate > FAILURE_ATTENTION


def _success():
    return col(Decision.outcome) == "allow"  # allowed and carried out: not refused, and no error nor upstream 5xx


def _system_join(query):
    return (query.select_from(Decision).join(NamedCredential, col(NamedCredential.external_id) == col(Decision.named_credential))
            .join(ExternalCredential, col(ExternalCredential.id) == col(NamedCredential.credential_id))
            .join(System, col(System.id) == col(ExternalCredential.system_id)))


def _hour_bucket(dialect: str, column):
    if dialect == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H", column)
    return sa.func.to_char(sa.func.date_trunc("hour", sa.func.timezone("UTC", column)), "YYYY-MM-DD HH24")


def system_stats(session, now: dt.datetime) -> list[SystemStats]:
    since = now - dt.timedelta(hours=24)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    systems = session.execute(select(System).order_by(col(System.external_id))).scalars().all()
    stats = {s.external_id: SystemStats(s.external_id, s.name or s.external_id, daily_budget=s.daily_api_budget)
             for s in systems}
    ok = sa.func.sum(sa.case((_success(), 1), else_=0))
    denied = sa.func.sum(sa.case((col(Decision.outcome) == "deny", 1), else_=0))
    failed = sa.func.sum(sa.case((col(Decision.outcome) == "error", 1), else_=0))
    rows = session.execute(_system_join(sa.select(col(System.external_id), sa.func.count(), ok, denied, failed))
                           .where(col(Decision.at) >= since).group_by(col(System.external_id))).all()
    for system, count, successes, denials, failures in rows:
        row = stats[system]
        row.volume_24h, row.successes_24h = int(count), int(successes or 0)
        row.denials_24h, row.failures_24h = int(denials or 0), int(failures or 0)
    dialect = session.get_bind().dialect.name
    bucket = _hour_bucket(dialect, col(Decision.at)).label("bucket")
    hours = [(since + dt.timedelta(hours=i + 1)).strftime("%Y-%m-%d %H") for i in range(24)]
    index = {h: i for i, h in enumerate(hours)}
    for system, hour, count in session.execute(
            _system_join(select(col(System.external_id), bucket, sa.func.count())).where(col(Decision.at) >= since)
            .group_by(col(System.external_id), bucket)).all():
        if hour in index:
            stats[system].hourly[index[hour]] = int(count)
    for system, count in session.execute(
            _system_join(select(col(System.external_id), sa.func.count()))
            .where(col(Decision.at) >= midnight, col(Decision.upstream_status).is_not(None))
            .group_by(col(System.external_id))).all():
        stats[system].calls_today = int(count)
    for system, p95 in _p95_by_system(session, since):
        stats[system].p95_ms = float(p95)
    return list(stats.values())


def _p95_by_system(session, since: dt.datetime):
    """Nearest-rank p95 for every system in one query: rank latencies per system with window functions
    (SQLite >= 3.25 and PostgreSQL) and keep the row whose rank is ceil(0.95 n)."""
    ranked = _system_join(select(
        col(System.external_id).label("system"), col(Decision.latency_ms).label("latency"),
        sa.func.row_number().over(partition_by=col(System.external_id), order_by=col(Decision.latency_ms)).label("rank"),
        sa.func.count().over(partition_by=col(System.external_id)).label("n"),
    )).where(col(Decision.at) >= since, col(Decision.latency_ms).is_not(None)).subquery()
    # ceil(0.95 n) in integer arithmetic: (95 n + 99) // 100
    return session.execute(select(ranked.c.system, ranked.c.latency)
                           .where(ranked.c.rank == (ranked.c.n * 95 + 99) // 100)).all()


def hour_labels(now: dt.datetime) -> list[str]:
    since = now - dt.timedelta(hours=24)
    return [(since + dt.timedelta(hours=i + 1)).strftime("%H:00") for i in range(24)]


def open_findings(session) -> dict[str, int]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, count in session.execute(select(col(Finding.severity), sa.func.count())
                                           .where(col(Finding.status) == "open").group_by(col(Finding.severity))).all():
        counts[severity] = int(count)
    return counts


def findings_trend(session, now: dt.datetime, days: int = 14) -> tuple[list[str], dict[str, list[int]]]:
    """Open findings per severity at the end of each of the last `days` days (from first_seen/resolved times)."""
    labels: list[str] = []
    series: dict[str, list[int]] = {s: [] for s in SEVERITIES}
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(days - 1, -1, -1):
        end = min(today + dt.timedelta(days=1 - back), now)
        labels.append((today - dt.timedelta(days=back)).strftime("%m-%d"))
        rows = dict(session.execute(
            select(col(Finding.severity), sa.func.count())
            .where(col(Finding.first_seen_at) <= end, col(Finding.status) != "suppressed",
                   sa.or_(col(Finding.resolved_at).is_(None), col(Finding.resolved_at) > end))
            .group_by(col(Finding.severity))).all())
        for severity in SEVERITIES:
            series[severity].append(int(rows.get(severity, 0)))
    return labels, {k: v for k, v in series.items() if any(v) or k in ("critical", "high", "medium")}


def rotations_due(session, now: dt.datetime, within_days: int = 7, limit: int = 10) -> list[SecretRef]:
    return list(session.execute(select(SecretRef).where(col(SecretRef.next_due_at).is_not(None),
                                                        col(SecretRef.next_due_at) <= now + dt.timedelta(days=within_days))
                                .order_by(col(SecretRef.next_due_at)).limit(limit)).scalars())


def failed_rotations(session, limit: int = 10) -> list[tuple[RotationRun, str]]:
    rows = session.execute(select(RotationRun, col(SecretRef.external_id))
                           .join(SecretRef, col(SecretRef.id) == col(RotationRun.secret_ref_id))
                           .where(col(RotationRun.state).in_(FAILED_RUN_STATES))
                           .order_by(col(RotationRun.started_at).desc()).limit(limit)).all()
    return [(run, ref) for run, ref in rows]


def principals_needing_reconnect(session) -> int:
    """Per-user principals whose upstream grant was revoked or expired: someone has to connect them again."""
    return int(session.execute(select(sa.func.count()).select_from(Principal)
                               .where(col(Principal.needs_reconnect_at).is_not(None))).scalar_one())


def overdue_rotations(session, now: dt.datetime) -> int:
    return int(session.execute(select(sa.func.count()).select_from(SecretRef)
                               .where(col(SecretRef.next_due_at).is_not(None), col(SecretRef.next_due_at) < now)).scalar_one())
