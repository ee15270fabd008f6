"""Identity sharing (seed anti-pattern "Shared integration user", section 6 principal types)."""
from __future__ import annotations

from collections import defaultdict

from govern.audit.registry import Hit, rule
from govern.audit.model import AuditModel

SHARED = 'Anti-patterns: "Shared integration user — Cannot audit or attribute actions. Separate integration users per system"'
S6_PRINCIPALS = '§6 Use Named Credentials: "Use Principal types: Named Principal (shared), Per User (individual context)"'


@rule("GOV-ID-001", "Integration user shared between systems", "high", rationale=SHARED,
      remediation="Create one integration user per system pair and split the permission sets accordingly.")
def shared_user(model: AuditModel):
    """An integration joins a pair of systems: its source (the user's source_system, when declared) and
    what it calls. One user legitimately reaches both sides of its pair (a lead sync reads HubSpot and
    writes Salesforce); more than two systems means one identity serves several integrations, and their
    actions can no longer be told apart."""
    for u in model.users.values():
        systems = {u.source_system} if u.source_system else set()
        for ps in model.user_permission_sets(u):
            for g in ps.grants:
                s = model.system_of_named_credential(g.named_credential)
                if s:
                    systems.add(s)
        usage = model.usage.get(u.id)
        if usage:
            for p in usage.patterns:
                s = model.system_of_named_credential(p.named_credential)
                if s:
                    systems.add(s)
        if len(systems) > 2:
            yield Hit("integration_user", u.id, f"{u.id} spans {len(systems)} systems: {', '.join(sorted(systems))}",
                      {"systems": sorted(systems), "source_system": u.source_system})


@rule("GOV-ID-002", "Per-user principal used as a shared one", "high", rationale=S6_PRINCIPALS,
      remediation="Bind each per-user principal to exactly one integration user, or declare a named principal.")
def per_user_shared(model: AuditModel):
    if model.source == "salesforce":
        return  # metadata does not bind per-user principals to users; only govern's landscape can be judged
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    nc_by_cred = defaultdict(list)
    for named in model.named_credentials.values():
        nc_by_cred[named.credential].append(named.id)
    for u in model.users.values():
        for ps in model.user_permission_sets(u):
            for g in ps.grants:
                nc = model.named_credentials.get(g.named_credential or "")
                if nc and g.principal:
                    holders[(nc.credential or "", g.principal)].add(u.id)
        usage = model.usage.get(u.id)
        for (nc_id, principal) in (usage.principals if usage else {}):
            nc = model.named_credentials.get(nc_id)
            if nc:
                holders[(nc.credential or "", principal)].add(u.id)
    for c in model.credentials.values():
        for p in c.principals:
            if p.kind != "per_user":
                continue
            users = holders.get((c.id, p.name), set())
            others = users - {p.user} if p.user else users
            if p.user is None or others:
                yield Hit("principal", f"{c.id}/{p.name}",
                          f"per-user principal {c.id}/{p.name} " + ("belongs to no user" if p.user is None else
                                                                   f"of {p.user} is used by {sorted(others)}"),
                          {"owner": p.user, "used_by": sorted(users)}, p.location or c.location)


@rule("GOV-ID-003", "Named principal shared by several callers", "medium", rationale=S6_PRINCIPALS,
      remediation="Give each integration its own principal (or per-user principals) so actions can be attributed.")
def named_principal_shared(model: AuditModel):
    if model.source == "salesforce":
        # A browser-authorised OAuth named principal makes every caller act as the one person who authorised it.
        for c in model.credentials.values():
            kinds = {p.kind for p in c.principals}
            if c.protocol.lower() == "oauth" and c.principals and kinds == {"named"} and \
                    c.config.get("AuthProvider"):
                yield Hit("credential", c.id, f"external credential {c.id} authorises every caller as one OAuth user",
                          {"protocol": c.protocol, "principals": [p.name for p in c.principals]}, c.location)
        for legacy in model.named_credentials.values():
            if legacy.legacy and (legacy.protocol or "").lower() == "oauth" and legacy.principal_type == "NamedUser":
                yield Hit("credential", legacy.id, f"legacy named credential {legacy.id} authorises every caller as one "
                          "OAuth user (NamedUser)", {"protocol": legacy.protocol, "principalType": legacy.principal_type},
                          legacy.element_lines.get("principalType", legacy.location))
        return
    users_by_principal: dict[tuple[str, str], set[str]] = defaultdict(set)
    for u in model.users.values():
        for ps in model.user_permission_sets(u):
            for g in ps.grants:
                nc = model.named_credentials.get(g.named_credential or "")
                if nc:
                    users_by_principal[(nc.credential or "", g.principal or "*")].add(u.id)
    for c in model.credentials.values():
        for p in c.principals:
            if p.kind == "named":
                users = users_by_principal.get((c.id, p.name), set()) | users_by_principal.get((c.id, "*"), set())
                if len(users) > 1:
                    yield Hit("principal", f"{c.id}/{p.name}", f"named principal {c.id}/{p.name} is shared by "
                              f"{len(users)} integration users", {"users": sorted(users)})
