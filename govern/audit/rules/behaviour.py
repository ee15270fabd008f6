"""The seed's anti-patterns that only behaviour shows, read from the decision log's aggregates over the window
(govern.store.audit_loader): polling, synchronous bulk, insert instead of upsert, the god integration, and a
production system used with no non-production twin. The thresholds are AuditPolicy's (docs/audit.md, "Behaviour").
"""
from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable

from govern.audit.model import AuditModel, GrantM, RequestPattern, SystemM, WriteMinuteM
from govern.audit.registry import Hit, rule

POLLING = 'Anti-patterns (design): "Polling every 5 seconds — Wastes API calls, false sense of real-time. Use ' \
          'event-driven (CDC, Platform Events, Pub/Sub)"'
SYNC_BULK = 'Anti-patterns (implementation): "Synchronous for bulk — Governor limit violations, timeouts. Bulk API 2.0 ' \
            'for volume > 200 records"; (design) "Ignoring API limits — … use Bulk/Composite to optimize"'
UPSERT = 'Anti-patterns (implementation): "Insert instead of upsert — Duplicates on retry, no idempotency. External ID ' \
         '+ upsert"; §9 Implement Idempotency Everywhere: "Design database operations as idempotent (upsert, not insert)"'
GOD = 'Anti-patterns (design): "God integration — One integration handles all data exchange. Separate integrations by ' \
      'business domain and timing"'
PROD_ONLY = 'Anti-patterns (operational): "Testing only in production — Risk of data corruption. Sandbox testing with ' \
            'production-like data"; §13 Test at Every Layer: "Sandbox with test environments"'

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Salesforce REST: a create is POST .../sobjects/Object; an upsert by external id is PATCH .../sobjects/Object/Field/value
_SOBJECTS = re.compile(r"/sobjects/(?P<object>[A-Za-z0-9_]+)(?P<rest>(?:/[^/]+)*)/?$")
# words that mark a system or host as not production (split on - _ . and spaces)
NON_PRODUCTION = frozenset({"sandbox", "sbx", "staging", "stage", "stg", "test", "testing", "dev", "development",
                            "uat", "qa", "preprod", "nonprod", "scratch", "demo"})
_WORDS = re.compile(r"[A-Za-z0-9]+")


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def _sobject(path: str | None) -> tuple[str, list[str]] | None:
    """(object, the segments after it) of a Salesforce REST sobjects path, else None."""
    m = _SOBJECTS.search(path or "")
    if m is None:
        return None
    return m.group("object"), [s for s in m.group("rest").split("/") if s]


# --- polling ------------------------------------------------------------------------------------------------

@rule("GOV-BEHAV-002", "Polling: the same GET at a fixed short interval", "medium", rationale=POLLING,
      needs_usage=True,
      remediation="Subscribe to changes instead of asking for them: Change Data Capture, Platform Events or the "
      "Pub/Sub API on Salesforce, a webhook elsewhere. If polling must stay, poll far less often and ask for what "
      "changed since the last call (a modified-since filter), not the same resource again.")
def polling(model: AuditModel):
    pol = model.policy
    for user, usage in model.usage.items():
        for p in usage.polls:
            if p.intervals + 1 < pol.poll_min_calls or p.mean_seconds <= 0:
                continue
            if p.mean_seconds > pol.poll_max_interval_seconds:
                continue
            jitter = p.stdev_seconds / p.mean_seconds
            if jitter > pol.poll_max_jitter:
                continue
            yield Hit("integration_user", f"{user}/{p.named_credential}{p.path or ''}",
                      f"{user} called GET {p.path} on {p.named_credential} {p.intervals + 1} times, every "
                      f"{p.mean_seconds:.0f} s (±{p.stdev_seconds:.1f} s), from {_iso(p.first_at)} to {_iso(p.last_at)}",
                      {"user": user, "named_credential": p.named_credential, "method": "GET", "path": p.path,
                       "calls": p.intervals + 1, "interval_seconds": round(p.mean_seconds, 1),
                       "interval_stdev_seconds": round(p.stdev_seconds, 2), "first": _iso(p.first_at),
                       "last": _iso(p.last_at)})


# --- synchronous bulk ---------------------------------------------------------------------------------------

def _densest(minutes: list[WriteMinuteM], span: int) -> tuple[int, dt.datetime, dt.datetime, dict[str, int]]:
    """The most writes within any `span` consecutive minutes: (count, first minute, last minute, by method)."""
    by_minute: dict[dt.datetime, int] = defaultdict(int)
    for m in minutes:
        by_minute[m.minute] += m.count
    times = sorted(by_minute)
    best, best_at, lo, running = 0, (times[0], times[0]), 0, 0
    for t in times:
        running += by_minute[t]
        while times[lo] <= t - dt.timedelta(minutes=span):
            running -= by_minute[times[lo]]
            lo += 1
        if running > best:
            best, best_at = running, (times[lo], t)
    methods: dict[str, int] = defaultdict(int)
    for m in minutes:
        if best_at[0] <= m.minute <= best_at[1]:
            methods[m.method] += m.count
    return best, best_at[0], best_at[1], dict(sorted(methods.items()))


@rule("GOV-BEHAV-003", "Synchronous bulk: bursts of single-record writes", "high", rationale=SYNC_BULK,
      needs_usage=True,
      remediation="Send volume through the Bulk API 2.0 (an ingest job per batch; grant the Bulk API type to the "
      "permission set) or, for up to 200 records that belong together, one Composite or sObject Collections "
      "request; keep single-record REST calls for single changes.")
def synchronous_bulk(model: AuditModel):
    pol = model.policy
    for user, usage in model.usage.items():
        groups: dict[tuple[str | None, str | None], list[WriteMinuteM]] = defaultdict(list)
        for m in usage.write_minutes:
            obj = m.resource_object or (_sobject(m.path) or (None,))[0]
            groups[(m.named_credential, obj)].append(m)
        for (nc, obj), minutes in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
            count, start, end, methods = _densest(minutes, pol.bulk_window_minutes)
            if count < pol.bulk_min_writes:
                continue
            target = obj or "its API"
            yield Hit("integration_user", f"{user}/{nc}/{obj or '*'}",
                      f"{user} made {count} single-record writes to {target} on {nc} within {pol.bulk_window_minutes} "
                      f"minutes ({_iso(start)} to {_iso(end + dt.timedelta(minutes=1))})",
                      {"user": user, "named_credential": nc, "object": obj, "writes": count, "methods": methods,
                       "window_minutes": pol.bulk_window_minutes, "first": _iso(start),
                       "last": _iso(end + dt.timedelta(minutes=1)),
                       "writes_in_window": sum(m.count for m in minutes)})


# --- insert instead of upsert -------------------------------------------------------------------------------

def _granted_upsert(grants: Iterable[GrantM]) -> dict[tuple[str | None, str], set[str]]:
    """(named credential, object) -> the external-id upsert path patterns that grants name (a literal field)."""
    out: dict[tuple[str | None, str], set[str]] = defaultdict(set)
    for g in grants:
        if g.methods and "PATCH" not in g.methods:
            continue
        for pattern in g.paths:
            found = _sobject(pattern)
            if found and len(found[1]) == 2 and "*" not in found[1][0] and found[1][0] != "Id":
                out[(g.named_credential, found[0])].add(pattern)
    return out


def _system_key(model: AuditModel, nc: str | None) -> str:
    return model.system_of_named_credential(nc) or f"named_credential:{nc}"


@rule("GOV-BEHAV-004", "Insert instead of upsert", "medium", rationale=UPSERT, needs_usage=True,
      remediation="Create and update these records with an upsert on the external id (PATCH "
      "/sobjects/Object/ExternalIdField/value), which the integration already may call, so a retried call updates "
      "the record it created instead of creating a duplicate.")
def insert_instead_of_upsert(model: AuditModel):
    pol = model.policy
    # where an upsert path exists: a grant names one, or someone used one in the window
    upsert: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (nc, obj), patterns in _granted_upsert(g for ps in model.permission_sets.values() for g in ps.grants).items():
        upsert[(_system_key(model, nc), obj)] |= {f"{nc}: PATCH {p} (granted)" for p in sorted(patterns)}
    for usage in model.usage.values():
        for p in usage.patterns:
            found = _sobject(p.path)
            if p.method == "PATCH" and found and len(found[1]) == 2 and found[1][0] != "Id":
                key = (_system_key(model, p.named_credential), found[0])
                if len(upsert[key]) < 5:
                    upsert[key].add(f"{p.named_credential}: PATCH {(p.path or '').rsplit('/', 1)[0]}/… (used)")
    for user, usage in model.usage.items():
        inserts: dict[tuple[str | None, str], list[RequestPattern]] = defaultdict(list)
        for p in usage.patterns:
            found = _sobject(p.path)
            if p.method == "POST" and found and not found[1]:
                inserts[(p.named_credential, found[0])].append(p)
        for (nc, obj), pats in sorted(inserts.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
            count = sum(p.count for p in pats)
            paths = upsert.get((_system_key(model, nc), obj))
            if count < pol.upsert_min_inserts or not paths:
                continue
            first = min((p.first_at for p in pats if p.first_at), default=None)
            last = max((p.last_at for p in pats if p.last_at), default=None)
            yield Hit("integration_user", f"{user}/{nc}/{obj}",
                      f"{user} created {obj} records with {count} POSTs on {nc} ({_iso(first)} to {_iso(last)}) "
                      f"though an external-id upsert path exists", {
                          "user": user, "named_credential": nc, "object": obj, "inserts": count,
                          "insert_paths": sorted({p.path or "" for p in pats})[:5], "upsert_paths": sorted(paths),
                          "first": _iso(first), "last": _iso(last)})


# --- the god integration ------------------------------------------------------------------------------------

@rule("GOV-BEHAV-005", "God integration: one user writing to many objects or systems", "medium", rationale=GOD,
      needs_usage=True,
      remediation="Split the integration by business domain and timing: one integration user (and permission set) "
      "per domain, each writing only its own objects, so that each can be owned, limited and audited apart.")
def god_integration(model: AuditModel):
    pol = model.policy
    for user, usage in model.usage.items():
        systems: dict[str, int] = defaultdict(int)
        objects: dict[str, int] = defaultdict(int)
        first: dt.datetime | None = None
        last: dt.datetime | None = None
        for p in usage.patterns:
            if p.method not in WRITES:
                continue
            system = model.system_of_named_credential(p.named_credential) or f"({p.named_credential})"
            systems[system] += p.count
            found = p.resource_object or (_sobject(p.path) or (None,))[0]
            if found:
                objects[f"{system}:{found}"] += p.count
            first = min(filter(None, (first, p.first_at)), default=None)
            last = max(filter(None, (last, p.last_at)), default=None)
        if len(systems) < pol.god_min_systems and len(objects) < pol.god_min_objects:
            continue
        yield Hit("integration_user", user,
                  f"{user} wrote to {len(objects)} objects in {len(systems)} systems ({', '.join(sorted(systems))}) "
                  f"from {_iso(first)} to {_iso(last)}",
                  {"user": user, "systems": dict(sorted(systems.items())), "objects": dict(sorted(objects.items())),
                   "writes": sum(systems.values()), "first": _iso(first), "last": _iso(last)})


# --- testing only in production -----------------------------------------------------------------------------

def _words(text: str | None) -> set[str]:
    return {w.lower() for w in _WORDS.findall(text or "")}


def _hosts(model: AuditModel, system: str) -> list[str]:
    out = []
    for nc in model.named_credentials.values():
        cred = model.credentials.get(nc.credential or "")
        if cred and cred.system == system:
            host = nc.url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
            out.append(host)
    return out


def is_non_production(model: AuditModel, s: SystemM) -> bool:
    """A system is non-production when its id or name says so (sandbox, staging, test, dev, uat, qa...) or its
    endpoints are a Salesforce sandbox (test.salesforce.com, *.sandbox.my.salesforce.com) or such a host."""
    if _words(s.id) & NON_PRODUCTION:
        return True
    for host in _hosts(model, s.id):
        if host == "test.salesforce.com" or ".sandbox." in f".{host}":
            return True
        if host.split(".")[0] in NON_PRODUCTION:
            return True
    return False


def _base(system_id: str) -> str:
    return "-".join(w for w in _WORDS.findall(system_id.lower()) if w not in NON_PRODUCTION and w not in ("prod",
                                                                                                           "production"))


@rule("GOV-BEHAV-006", "Testing only in production: no non-production twin", "high", rationale=PROD_ONLY,
      needs_usage=True,
      remediation="Declare the system's sandbox or staging twin in governance.yaml (a system with its own "
      "credentials and named credentials, e.g. `salesforce-sandbox` on test.salesforce.com) and test integration "
      "changes there with production-like data before they reach production.")
def production_only(model: AuditModel):
    calls: dict[str, int] = defaultdict(int)
    users: dict[str, set[str]] = defaultdict(set)
    first: dict[str, dt.datetime] = {}
    last: dict[str, dt.datetime] = {}
    for user, usage in model.usage.items():
        for p in usage.patterns:
            system = model.system_of_named_credential(p.named_credential)
            if system is None:
                continue
            calls[system] += p.count
            users[system].add(user)
            if p.first_at and (system not in first or p.first_at < first[system]):
                first[system] = p.first_at
            if p.last_at and (system not in last or p.last_at > last[system]):
                last[system] = p.last_at
    twins: list[SystemM] = [s for s in model.systems.values() if is_non_production(model, s)]
    twin_ids = {t.id for t in twins}
    for system in sorted(calls):
        s = model.systems.get(system)
        if s is None or system in twin_ids:
            continue
        twin = next((t for t in twins if _base(t.id) == _base(s.id) or (s.kind != "generic" and t.kind == s.kind)), None)
        if twin is not None:
            continue
        yield Hit("system", system,
                  f"production system {system} ({s.kind}) took {calls[system]} calls from {len(users[system])} "
                  f"integration users ({_iso(first.get(system))} to {_iso(last.get(system))}) and has no sandbox "
                  f"or staging twin in the landscape",
                  {"system": system, "kind": s.kind, "calls": calls[system], "users": sorted(users[system]),
                   "first": _iso(first.get(system)), "last": _iso(last.get(system)),
                   "hosts": sorted(set(_hosts(model, system)))}, s.location)
