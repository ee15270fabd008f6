"""Unused access and behaviour, from the decision log (seed §7 "Enable only the APIs needed", §17 alerts)."""
from __future__ import annotations

import datetime as dt
import statistics

from govern.audit.registry import Hit, rule
from govern.audit.model import AuditModel
from govern.audit.rightsizing import recommendations

S7_API = '§7 Apply the Principle of Least Privilege: "Enable only the APIs needed (disable SOAP if using REST only)"'
S7_MIN = '§7: "Every integration should have the minimum permissions needed"'
S17 = '§17 Monitor Proactively: "Alerts for: DLQ depth, failure rate spikes, API limit consumption"'


def _unused(model: AuditModel, kinds: set[str], api: str | None = None):
    for rec in recommendations(model):
        for item in rec.unused:
            if item.kind not in kinds:
                continue
            if api is not None and item.detail.get("api_type") != api:
                continue
            yield rec, item


@rule("GOV-API-001", "SOAP enabled but unused", "medium", rationale=S7_API, needs_usage=True,
      remediation="Remove SOAP from the permission set's api_types (REST covers the calls made).")
def soap_unused(model: AuditModel):
    for rec, item in _unused(model, {"api_type"}, "SOAP"):
        yield Hit("integration_user", f"{rec.user}/{item.permission_set}/SOAP", f"{rec.user} may use SOAP through "
                  f"{item.permission_set} but made no SOAP call in {rec.window_days} days",
                  {"user": rec.user, "permission_set": item.permission_set})


@rule("GOV-API-002", "Bulk API enabled but unused", "medium", rationale=S7_API, needs_usage=True,
      remediation="Remove Bulk from the permission set's api_types.")
def bulk_unused(model: AuditModel):
    for rec, item in _unused(model, {"api_type"}, "Bulk"):
        yield Hit("integration_user", f"{rec.user}/{item.permission_set}/Bulk", f"{rec.user} may use the Bulk API "
                  f"through {item.permission_set} but made no Bulk call in {rec.window_days} days",
                  {"user": rec.user, "permission_set": item.permission_set})


@rule("GOV-API-003", "SOAP or Bulk endpoint that no permission set grants", "medium", rationale=S7_API,
      remediation="Delete the named credential (and its credential, if nothing else uses it); declare it again "
      "when an integration needs that API.")
def unreachable_soap_bulk(model: AuditModel):
    """A SOAP or Bulk named credential nobody may call is pure attack surface: a configured endpoint and a
    stored secret that no integration needs. Needs no decision log: no grant means no possible use."""
    if model.source != "govern":
        return  # Salesforce metadata grants External Credential principals, not named credentials
    granted = {g.named_credential for ps in model.permission_sets.values() for g in ps.grants}
    for nc in model.named_credentials.values():
        if nc.api_type in ("SOAP", "Bulk") and nc.id not in granted:
            yield Hit("named_credential", nc.id, f"{nc.api_type} named credential {nc.id} is granted by no permission "
                      f"set", {"api_type": nc.api_type, "credential": nc.credential, "url": nc.url}, nc.location)


@rule("GOV-USAGE-001", "Unused named-credential grant", "medium", rationale=S7_MIN, needs_usage=True,
      remediation="Apply the right-sized permission set (`govern audit --recommend FILE`, then `govern apply -f FILE`), "
      "which drops the unused grant.")
def unused_grant(model: AuditModel):
    for rec, item in _unused(model, {"named_credential"}):
        d = item.detail
        yield Hit("grant", f"{rec.user}/{item.permission_set}#{d['grant']}", f"{rec.user} never used its grant on "
                  f"{d['named_credential']} ({item.permission_set}) in {rec.window_days} days",
                  {"user": rec.user, "permission_set": item.permission_set, **d})


@rule("GOV-USAGE-002", "Unused scope", "low", rationale=S7_MIN, needs_usage=True,
      remediation="Remove the scope from the integration user or permission set.")
def unused_scope(model: AuditModel):
    for rec, item in _unused(model, {"scope"}):
        where = item.permission_set or "user"
        yield Hit("scope", f"{rec.user}/{where}/{item.detail['scope']}", f"{rec.user} never used scope "
                  f"{item.detail['scope']} ({where})", {"user": rec.user, "permission_set": item.permission_set,
                                                        **item.detail})


@rule("GOV-USAGE-003", "Unused methods, paths, objects or object permissions in a grant", "low", rationale=S7_MIN,
      needs_usage=True,
      remediation="Narrow the grant's methods and path patterns to those used (see the right-sized set).")
def unused_methods_paths(model: AuditModel):
    for rec, item in _unused(model, {"methods", "paths", "objects", "object_permissions"}):
        d = item.detail
        yield Hit("grant", f"{rec.user}/{item.permission_set}#{d['grant']}/{item.kind}",
                  f"{rec.user} never used {item.kind} {d['unused']} of {item.permission_set}",
                  {"user": rec.user, "permission_set": item.permission_set, "kind": item.kind, **d})


@rule("GOV-USAGE-004", "Unused API type", "low", rationale=S7_API, needs_usage=True,
      remediation="Remove the API type from the permission set's api_types.")
def unused_api(model: AuditModel):
    for rec, item in _unused(model, {"api_type"}):
        if item.detail["api_type"] in ("SOAP", "Bulk"):
            continue  # GOV-API-001/002 report these
        yield Hit("integration_user", f"{rec.user}/{item.permission_set}/{item.detail['api_type']}",
                  f"{rec.user} never used {item.detail['api_type']} through {item.permission_set}",
                  {"user": rec.user, "permission_set": item.permission_set, **item.detail})


@rule("GOV-USAGE-005", "Permission set assigned to nobody", "info", rationale=S7_MIN,
      remediation="Delete the permission set, or assign it deliberately.")
def orphan_set(model: AuditModel):
    if model.source != "govern":
        return  # metadata has no assignments
    assigned = {a.permission_set for u in model.users.values() for a in u.assignments}
    for ps in model.permission_sets.values():
        if ps.id not in assigned:
            yield Hit("permission_set", ps.id, f"{ps.id} is not assigned to any integration user", {})


@rule("GOV-BEHAV-001", "Spike in denied requests", "high", rationale=S17, needs_usage=True,
      remediation="Check the decision log for the day (`govern log show --user U --outcome deny`); a spike means a broken "
      "deployment or someone probing with the integration's credentials.")
def denied_spike(model: AuditModel):
    pol = model.policy
    for user, usage in model.usage.items():
        if not usage.denied_by_day:
            continue
        days = [model.today - dt.timedelta(days=i) for i in range(pol.window_days)]
        counts = [usage.denied_by_day.get(d, 0) for d in days]
        baseline = statistics.median(counts)
        worst_day, worst = max(usage.denied_by_day.items(), key=lambda kv: kv[1])
        if worst >= pol.denied_spike_min and worst > pol.denied_spike_factor * max(baseline, 1):
            yield Hit("integration_user", user, f"{user} had {worst} denied requests on {worst_day} "
                      f"(median {baseline}/day)", {"day": worst_day.isoformat(), "denied": worst,
                                                   "median_per_day": baseline, "total": usage.total_by_day.get(worst_day, 0)})
