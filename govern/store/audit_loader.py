"""Load the audit model from govern's tables. The decision log is aggregated in SQL (GROUP BY), so a
million decisions become a few thousand rows: distinct request shapes per user, and daily counts."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session
from sqlmodel import col

from govern.audit.model import (AssignmentM, AuditModel, AuditPolicy, CallHourM, CredentialM, GrantM, Location,
                                NamedCredentialM,
                                ObjectPerm, PermissionSetM, PollM, PrincipalM, RequestPattern, SecretM, SecretVersionM,
                                SystemM, UsageM, UserM, WriteMinuteM)
from govern.store.db import table_of
from govern.store.tables import (Assignment, Decision, ExternalCredential, IntegrationUser, NamedCredential,
                                 PermissionGrant, PermissionSet, Principal, RotationRun, SecretRef, SecretVersion,
                                 System)

# Decision records that are not calls through a named credential: a govern token issued (whose scopes are the
# user's whole allowance, not what it used) and a principal connected. They do not count as request patterns.
NOT_CALLS = ("oauth_token", "connect", "offboard")
# Writes that carry one record each (GOV-BEHAV-003): REST calls that are not Salesforce's composite or Bulk 2.0 paths
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
MANY_RECORD_PATHS = ("%/composite%", "%/jobs/ingest%", "%/jobs/query%")


def _aware(t):
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=dt.UTC)
    return t


def _objects(raw: dict) -> dict[str, ObjectPerm]:
    out = {}
    for name, perm in (raw or {}).items():
        perm = perm or {}
        out[name] = ObjectPerm(read=bool(perm.get("read")), create=bool(perm.get("create")),
                               edit=bool(perm.get("edit")), delete=bool(perm.get("delete")),
                               view_all=bool(perm.get("view_all")), modify_all=bool(perm.get("modify_all")),
                               fields=dict(perm.get("fields") or {}))
    return out


def _where(row) -> Location | None:
    """The governance.yaml file and line `govern apply` read the entity from, if it came from a file."""
    return Location(row.source_file, row.source_line or 1) if row.source_file else None


def load_model(session: Session, now: dt.datetime, policy: AuditPolicy | None = None) -> AuditModel:
    model = AuditModel(source="govern", now=now, policy=policy or AuditPolicy())
    systems = {s.id: s for s in session.execute(sa.select(System)).scalars()}
    for s in systems.values():
        model.systems[s.external_id] = SystemM(s.external_id, s.kind, s.owner, s.escalation_contact, s.runbook_url,
                                               s.daily_api_budget, s.api_version_policy,
                                               {"contract": s.contract, "sla": s.sla}, location=_where(s))
    creds = {c.id: c for c in session.execute(sa.select(ExternalCredential)).scalars()}
    users = {u.id: u for u in session.execute(sa.select(IntegrationUser)).scalars()}
    for c in creds.values():
        model.credentials[c.external_id] = CredentialM(
            c.external_id, systems[c.system_id].external_id if c.system_id in systems else None, c.protocol,
            c.principal_type, list(c.scopes or []), c.refresh_token_policy, dict(c.rotation or {}),
            config={"client_id": c.client_id, "token_url": c.token_url, "audience": c.audience}, location=_where(c),
            expiry=dict(c.expiry or {}))
    for p in session.execute(sa.select(Principal)).scalars():
        cred = creds.get(p.credential_id)
        if cred:
            owner = users[p.integration_user_id].external_id if p.integration_user_id in users else None
            model.credentials[cred.external_id].principals.append(PrincipalM(p.name, p.kind, owner))
    ncs = {n.id: n for n in session.execute(sa.select(NamedCredential)).scalars()}
    for n in ncs.values():
        model.named_credentials[n.external_id] = NamedCredentialM(
            n.external_id, creds[n.credential_id].external_id if n.credential_id in creds else None, n.url,
            n.api_version, n.api_type, list(n.allowed_methods or []), list(n.allowed_paths or []),
            config={"retry": n.retry, "circuit_breaker": n.circuit_breaker}, created_at=_aware(n.created_at),
            location=_where(n))
    sets = {ps.id: ps for ps in session.execute(sa.select(PermissionSet)).scalars()}
    for ps in sets.values():
        model.permission_sets[ps.external_id] = PermissionSetM(
            ps.external_id, description=ps.description, scopes=list(ps.scopes or []),
            api_types=list(ps.api_types or []), max_token_lifetime_seconds=ps.max_token_lifetime_seconds,
            system_permissions=list(ps.system_permissions or []), conditions=dict(ps.conditions or {}),
            location=_where(ps))
    for g in session.execute(sa.select(PermissionGrant).order_by(col(PermissionGrant.permission_set_id),
                                                                 col(PermissionGrant.position))).scalars():
        granted = sets.get(g.permission_set_id)
        if granted:
            model.permission_sets[granted.external_id].grants.append(GrantM(
                ncs[g.named_credential_id].external_id if g.named_credential_id in ncs else None, g.principal,
                list(g.methods or []), list(g.paths or []), _objects(g.objects)))
    for u in users.values():
        model.users[u.external_id] = UserM(
            u.external_id, u.name, u.owner, u.justification, u.status, u.review_date,
            systems[u.source_system_id].external_id if u.source_system_id in systems else None, u.client_auth_method,
            dict(u.jwks or {}),
            list(u.allowed_cidrs or []), list(u.allowed_scopes or []), _aware(u.created_at), _aware(u.last_used_at),
            _aware(u.client_secret_set_at), _aware(u.previous_secret_expires_at), bool(u.previous_client_secret_hash),
            location=_where(u), trust=u.trust)
    for a in session.execute(sa.select(Assignment)).scalars():
        if a.integration_user_id in users and a.permission_set_id in sets:
            model.users[users[a.integration_user_id].external_id].assignments.append(
                AssignmentM(sets[a.permission_set_id].external_id, a.expires_at))
    _load_secrets(session, model)
    _load_usage(session, model)
    return model


def _load_secrets(session: Session, model: AuditModel) -> None:
    refs = {r.id: r for r in session.execute(sa.select(SecretRef)).scalars()}
    by_id = {}
    for r in refs.values():
        by_id[r.id] = SecretM(r.external_id, r.owner_kind, r.owner, r.field, r.rotator, r.schedule, r.overlap_seconds,
                              _aware(r.set_at))
        model.secrets.append(by_id[r.id])
    for v in session.execute(sa.select(SecretVersion).where(col(SecretVersion.stage) != "revoked")).scalars():
        if v.secret_ref_id in by_id:
            by_id[v.secret_ref_id].versions.append(SecretVersionM(v.version, v.stage, _aware(v.created_at),
                                                                  _aware(v.expires_at)))
    latest = sa.select(col(RotationRun.secret_ref_id), sa.func.max(col(RotationRun.id)).label("id")) \
        .where(col(RotationRun.dry_run).is_(False)).group_by(col(RotationRun.secret_ref_id)).subquery()
    for run in session.execute(sa.select(RotationRun).join(latest, col(RotationRun.id) == latest.c.id)).scalars():
        s = by_id.get(run.secret_ref_id)
        if s:
            s.last_rotation_state, s.last_rotation_at = run.state, _aware(run.finished_at or run.started_at)
            # the error text is operator-written and never holds secret values (rotation's contract)
            s.last_rotation_error = (run.error or "")[:300] or None


def _load_usage(session: Session, model: AuditModel) -> None:
    since = model.now - dt.timedelta(days=model.policy.window_days)
    if session.get_bind().dialect.name == "postgresql":
        # the GROUP BYs hash ~1M rows; the default 4 MB work_mem spills them to disk (this transaction only)
        session.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    d = table_of(Decision).c
    in_window = d.at >= since
    usage: dict[str, UsageM] = {}

    def get(user):
        if user not in usage:
            usage[user] = UsageM(user)
        return usage[user]

    scopes_text = sa.cast(d.scopes_granted, sa.Text)
    shapes = sa.select(d.integration_user, d.named_credential, d.method, d.path, d.resource_object, d.api_type,
                       scopes_text.label("scopes"), sa.func.count().label("n"), sa.func.max(d.at).label("last"),
                       sa.func.min(d.at).label("first")) \
        .where(in_window, d.allowed.is_(True), d.integration_user.is_not(None), d.action.not_in(NOT_CALLS)) \
        .group_by(d.integration_user, d.named_credential, d.method, d.path, d.resource_object, d.api_type, scopes_text)
    for row in session.execute(shapes):
        u = get(row.integration_user)
        try:
            scopes = tuple(sorted(json.loads(row.scopes or "[]") or []))
        except ValueError:
            scopes = ()
        last = _aware(row.last)
        u.patterns.append(RequestPattern(row.named_credential, row.method, row.path, row.resource_object, row.api_type,
                                         scopes, row.n, _aware(row.first), last))
        u.allowed += row.n
        if u.last_at is None or (last and last > u.last_at):
            u.last_at = last
    day = sa.func.date(d.at)
    daily = sa.select(d.integration_user, day.label("day"), d.allowed, sa.func.count().label("n")) \
        .where(in_window, d.integration_user.is_not(None)).group_by(d.integration_user, day, d.allowed)
    for row in session.execute(daily):
        u = get(row.integration_user)
        when = row.day if isinstance(row.day, dt.date) else dt.date.fromisoformat(str(row.day)[:10])
        u.total_by_day[when] = u.total_by_day.get(when, 0) + row.n
        if not row.allowed:
            u.denied_by_day[when] = u.denied_by_day.get(when, 0) + row.n
            u.denied += row.n
    principals = sa.select(d.integration_user, d.named_credential, d.principal, sa.func.count().label("n")) \
        .where(in_window, d.allowed.is_(True), d.principal.is_not(None), d.integration_user.is_not(None),
               d.action.not_in(NOT_CALLS)) \
        .group_by(d.integration_user, d.named_credential, d.principal)
    for row in session.execute(principals):
        get(row.integration_user).principals[(row.named_credential, row.principal)] = row.n
    # Staleness looks further back than the usage window (stale_days, 90 by default): a user last used
    # 60 days ago is not "never used". Bounded by `at`, so this reads the same index range as above when
    # the log holds no more than stale_days of history, and never the whole log.
    stale_since = model.now - dt.timedelta(days=max(model.policy.stale_days, model.policy.window_days))
    last = sa.select(d.integration_user, sa.func.max(d.at).label("last")) \
        .where(d.at >= stale_since, d.allowed.is_(True), d.integration_user.is_not(None)) \
        .group_by(d.integration_user)
    model.last_allowed_at = {row.integration_user: _aware(row.last) for row in session.execute(last)}
    # min(at) is one step down ix_decision_at
    model.log_since = _aware(session.execute(sa.select(sa.func.min(d.at))).scalar())
    model.log_covers_window = model.log_since is not None and model.log_since <= since
    _load_behaviour(session, model, since, get, usage)
    model.usage = usage
    model.usage_loaded = True


def _epoch(dialect: str, column):
    """Seconds since 1970 of a timestamp column, in SQL, to the microsecond on both backends.

    SQLite keeps timestamps as UTC text, `YYYY-MM-DD HH:MM:SS.ffffff`: the whole seconds come from
    strftime('%s') on the first 19 characters (an integer, exact) and the fraction is the text after them.
    julianday() of the whole text rounds to the millisecond: 10:09:59.9996 became 10:10:00, a minute later."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", column), sa.Float)
    whole = sa.cast(sa.func.strftime("%s", sa.func.substr(column, 1, 19)), sa.Integer)
    return whole + sa.cast(sa.func.substr(column, 20), sa.Float)


def poll_candidates(usage: dict[str, UsageM], policy: AuditPolicy) -> dict[str, set[tuple[str, str]]]:
    """The GETs whose gaps are worth measuring: repeated at least poll_min_calls times, on average at least once
    every poll_candidate_seconds between their first and last call (the request shapes already hold the counts
    and times). A poller, even one that runs only part of the day, averages far more; a GET made now and then
    over the month does not, and its gaps are never sorted."""
    out: dict[str, set[tuple[str, str]]] = {}
    for user, u in usage.items():
        counts: dict[tuple[str, str], int] = {}
        times: dict[tuple[str, str], list[dt.datetime]] = {}
        for p in u.patterns:
            if p.method == "GET" and p.named_credential and p.path and p.first_at and p.last_at:
                key = (p.named_credential, p.path)
                counts[key] = counts.get(key, 0) + p.count
                times.setdefault(key, []).extend((p.first_at, p.last_at))
        for key, n in counts.items():
            span = (max(times[key]) - min(times[key])).total_seconds()
            if n >= max(policy.poll_min_calls, 2) and span / (n - 1) <= policy.poll_candidate_seconds:
                out.setdefault(user, set()).add(key)
    return out


def _load_behaviour(session: Session, model: AuditModel, since: dt.datetime, get, usage: dict[str, UsageM]) -> None:
    """The aggregates of the behaviour rules (govern.audit.rules.behaviour) over the window: the gaps between
    repeats of the same GET (a window function: LAG over user, named credential and path, for the candidates of
    `poll_candidates` only), and single-record writes counted per user, object and minute."""
    pol = model.policy
    dialect = session.get_bind().dialect.name
    d = table_of(Decision).c
    base = (d.at >= since, d.allowed.is_(True), d.integration_user.is_not(None), d.action.not_in(NOT_CALLS))
    epoch = _epoch(dialect, d.at)
    candidates = poll_candidates(usage, pol)
    if candidates:
        _load_polls(session, dialect, base, candidates, pol, get)
    _load_writes(session, base, epoch, get)
    _load_call_hours(session, base, epoch, usage, model)


def _load_call_hours(session: Session, base, epoch, usage: dict[str, UsageM], model: AuditModel) -> None:
    """The allowed calls per user and hour, for the users with enough calls for a time-window recommendation.

    A user whose permission sets name no time zone but UTC is read on UTC's wall clock, where every call in the
    same hour of the week has the same day and hour: the database counts the calls per user and hour of the week
    (at most 168 per user), and each becomes one slot standing for its calls with an instant of that hour (no
    timestamps read). A user whose sets name another zone (its daylight-saving changes move calls between local
    hours) gets every UTC hour of the window with the first and the last call in it."""
    d = table_of(Decision).c
    pol = model.policy
    users = sorted(user for user, u in usage.items() if u.allowed >= pol.window_min_calls)
    if not users:
        return
    zoned = [user for user in users if _zoned(model, user)]
    weekly = [user for user in users if user not in set(zoned)]
    if weekly:
        wanted = set(weekly)
        # a slot is a value: users with as many calls in the same hour of the week share one
        shared: list[dict[int, CallHourM]] = [{} for _ in _WEEK_HOURS]
        for user, slots, counts in _week_slots(session, base):
            if user not in wanted:
                continue
            hours = usage[user].call_hours
            for number, n in zip(slots, counts, strict=True):
                slot = shared[number].get(n)
                if slot is None:
                    at = _WEEK_HOURS[number]
                    slot = shared[number][n] = CallHourM(at, n, at, at)
                hours.append(slot)
    if zoned:
        hour_number = sa.func.floor(epoch / 3600)
        rows = sa.select(d.integration_user, hour_number.label("hour"), sa.func.count().label("n"),
                         sa.func.min(d.at).label("first"), sa.func.max(d.at).label("last")) \
            .where(*base, d.integration_user.in_(zoned)).group_by(d.integration_user, hour_number)
        for row in session.execute(rows):
            usage[row.integration_user].call_hours.append(CallHourM(
                dt.datetime.fromtimestamp(int(row.hour) * 3600, dt.UTC), int(row.n), _aware(row.first),
                _aware(row.last)))


def _week_slots(session: Session, base) -> Iterator[tuple[str, Sequence[int], Sequence[int]]]:
    """Per user: the hours of the week on the UTC wall clock in which it made calls (Monday 00:00 is 0, Sunday 23:00
    is 167), in order, and how many calls each. One GROUP BY scan of the window, for every user (an IN list would
    steer the scan off ix_decision_at); on PostgreSQL one row per user, its slots and counts as two arrays."""
    d = table_of(Decision).c
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        utc = sa.func.timezone("UTC", d.at)  # the UTC wall clock, whatever the session's TimeZone
        day, hour = sa.func.date_part("isodow", utc), sa.func.date_part("hour", utc)  # isodow: Monday 1..Sunday 7
    else:  # SQLite keeps UTC text, "YYYY-MM-DD HH:MM:SS...". %w of the date alone: Sunday 0..Saturday 6 (with the
        # time, strftime rounds to the millisecond, and 23:59:59.9999 on a Sunday would fall on Monday)
        day, hour = sa.func.strftime("%w", sa.func.substr(d.at, 1, 10)), sa.func.substr(d.at, 12, 2)
    counted = sa.select(d.integration_user.label("user"), day.label("day"), hour.label("hour"),
                        sa.func.count().label("n")).where(*base).group_by(d.integration_user, day, hour).subquery()
    c = counted.c
    number = ((sa.cast(c.day, sa.Integer) + 6) % 7 * 24 + sa.cast(c.hour, sa.Integer)).label("slot")  # Monday 0
    if postgres:
        rows = sa.select(c.user, sa.func.array_agg(aggregate_order_by(number, number)),
                         sa.func.array_agg(aggregate_order_by(c.n, number))).group_by(c.user)
        for user, slots, counts in session.execute(rows):
            yield user, slots, counts
    else:  # no arrays: its rows, grouped here
        rows = sa.select(c.user, number, c.n).order_by(c.user, number)
        for user, group in itertools.groupby(session.execute(rows), key=operator.itemgetter(0)):
            pairs = [(int(slot), int(n)) for _, slot, n in group]
            yield user, [slot for slot, _ in pairs], [n for _, n in pairs]


_A_MONDAY = dt.datetime(1970, 1, 5, tzinfo=dt.UTC)  # weekday() 0
_WEEK_HOURS = tuple(_A_MONDAY + dt.timedelta(hours=h) for h in range(7 * 24))  # the instants of the weekly slots


def _zoned(model: AuditModel, user: str) -> bool:
    """Whether a permission set of the user has a time window in a time zone other than UTC."""
    found = model.users.get(user)
    for assignment in found.assignments if found is not None else ():
        ps = model.permission_sets.get(assignment.permission_set)
        for window in ((ps.conditions or {}).get("time_windows") or ()) if ps is not None else ():
            if str(window.get("time_zone") or "UTC") != "UTC":
                return True
    return False


def _load_polls(session: Session, dialect: str, base, candidates: dict[str, set[tuple[str, str]]],
                pol: AuditPolicy, get) -> None:
    d = table_of(Decision).c
    if dialect == "postgresql":
        # byte order is enough to partition, and sorts ~2x faster than the database's collation
        keys = (d.integration_user.collate("C"), d.named_credential.collate("C"), d.path.collate("C"))
        previous = sa.func.lag(d.at).over(partition_by=keys, order_by=d.at)
        gap_seconds: sa.ColumnElement[Any] = sa.cast(sa.extract("epoch", d.at - previous), sa.Float)
    else:
        previous = sa.func.lag(sa.func.julianday(d.at)).over(
            partition_by=(d.integration_user, d.named_credential, d.path), order_by=d.at)
        gap_seconds = (sa.func.julianday(d.at) - previous) * 86400.0
    gaps = sa.select(d.integration_user.label("u"), d.named_credential.label("nc"), d.path.label("p"),
                     d.at.label("at"), gap_seconds.label("gap")) \
        .where(*base, d.method == "GET", d.integration_user.in_(sorted(candidates))).subquery()
    gap = gaps.c.gap
    polls = sa.select(gaps.c.u, gaps.c.nc, gaps.c.p, sa.func.count().label("n"), sa.func.sum(gap).label("s"),
                      sa.func.sum(gap * gap).label("ss"), sa.func.min(gaps.c.at).label("first"),
                      sa.func.max(gaps.c.at).label("last")) \
        .where(gap <= pol.poll_max_interval_seconds) \
        .group_by(gaps.c.u, gaps.c.nc, gaps.c.p).having(sa.func.count() >= max(pol.poll_min_calls - 1, 1))
    for row in session.execute(polls):
        n, total, squares = int(row.n), float(row.s or 0), float(row.ss or 0)
        mean = total / n
        stdev = max(squares / n - mean * mean, 0.0) ** 0.5
        if (row.nc, row.p) not in candidates.get(row.u, ()):
            continue
        get(row.u).polls.append(PollM(row.nc, row.p, n, mean, stdev, _aware(row.first), _aware(row.last)))


def _load_writes(session: Session, base, epoch, get) -> None:
    d = table_of(Decision).c
    minute = sa.func.floor(epoch / 60).label("minute")
    # a record without its object keeps its path, from which the rule reads a Salesforce object
    bare_path = sa.case((d.resource_object.is_(None), d.path), else_=None).label("bare_path")
    writes = sa.select(d.integration_user, d.named_credential, d.resource_object, bare_path, d.method, minute,
                       sa.func.count().label("n")) \
        .where(*base, d.method.in_(WRITE_METHODS), sa.func.coalesce(d.api_type, "REST").not_in(("Bulk", "SOAP")),
               *(sa.func.coalesce(d.path, "").not_like(p) for p in MANY_RECORD_PATHS)) \
        .group_by(d.integration_user, d.named_credential, d.resource_object, bare_path, d.method, minute)
    for row in session.execute(writes):
        at = dt.datetime.fromtimestamp(int(row.minute) * 60, dt.UTC)
        get(row.integration_user).write_minutes.append(
            WriteMinuteM(row.named_credential, row.resource_object, row.method, at, int(row.n), row.bare_path))
