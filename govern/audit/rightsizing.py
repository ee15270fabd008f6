"""Usage-based right-sizing: what each integration user was granted against what it exercised.

For each active user older than the window, every grant, method, path pattern, object permission, scope
and API type of its permission sets is compared with the allowed requests of the window (aggregated from
the decision log). The recommendation keeps only what was used, and is proved by replaying every allowed
request of the window against it with the broker's own rule functions (govern.domain.access_rules, the
same ones govern.policy.decider applies, in the same order): none may be denied.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from govern.audit.model import AuditModel, GrantM, PermissionSetM, RequestPattern, UserM
from govern.audit.time_windows import WindowRecommendation, recommend_window
from govern.domain.access_rules import (any_path_matches, method_allowed, object_access_allowed, path_matches,
                                        salesforce_object)

# HTTP method -> the Salesforce object permission it needs (as access_rules.object_access_allowed reads it).
_OBJECT_PERMISSION = {"GET": "read", "HEAD": "read", "POST": "create", "PATCH": "edit", "PUT": "edit",
                      "DELETE": "delete"}
_OBJECT_FLAGS = ("read", "create", "edit", "delete", "view_all", "modify_all")


@dataclass
class UnusedItem:
    kind: str  # named_credential | methods | paths | scope | api_type | objects
    permission_set: str | None
    detail: dict[str, Any]


@dataclass
class Recommendation:
    user: str
    window_days: int
    permission_sets: list[dict[str, Any]] = field(default_factory=list)  # governance.yaml entries
    assignments: list[Any] = field(default_factory=list)
    user_scopes: list[str] = field(default_factory=list)
    unused: list[UnusedItem] = field(default_factory=list)
    proof: dict[str, int] = field(default_factory=dict)
    judged: bool = True
    reason: str = ""
    time_window: WindowRecommendation | None = None  # when the user's calls fell (govern.audit.time_windows)


def _pattern_object(p: RequestPattern) -> str | None:
    return p.resource_object or salesforce_object(p.path)


def _objects_dict(objects: dict[str, Any]) -> dict[str, dict]:
    out = {}
    for name, perm in objects.items():
        if isinstance(perm, dict):
            out[name] = perm
        elif perm is None:
            out[name] = {}
        else:
            out[name] = {k: getattr(perm, k) for k in _OBJECT_FLAGS} | {"fields": dict(perm.fields)}
    return out


def _operation_allowed(methods, paths, objects: dict[str, dict], p: RequestPattern) -> bool:
    """govern.policy.decider._operation_allowed on a request shape from the log (fields are not logged)."""
    if not (p.method or p.path):
        return True  # a token request names no operation: the named credential and scopes decide
    method = (p.method or "GET").upper()
    if not method_allowed(methods, method):
        return False
    path = p.path or "/"
    if paths and not any_path_matches(paths, path):
        return False
    if objects:
        obj = _pattern_object(p)
        if obj is not None and not object_access_allowed(objects, obj, method, ()):
            return False
    return True


def _grant_matches(g: GrantM, p: RequestPattern) -> bool:
    return g.named_credential == p.named_credential and _operation_allowed(
        g.methods, g.paths, _objects_dict(g.objects), p)


def _api(p: RequestPattern) -> str:
    return p.api_type or "REST"


def permits(sets: list[dict[str, Any]], user_scopes: list[str], p: RequestPattern) -> bool:
    """Would the broker allow a request of this shape under these governance.yaml permission-set entries,
    for a user holding `user_scopes`? The decider's steps: grants of the named credential, API type,
    operation (method, path, object), then requested scopes within the permitting sets' scopes and the
    user's scopes."""
    api = _api(p).lower()
    permitting = []
    for ps in sets:
        if ps.get("api_types") and api not in {t.lower() for t in ps["api_types"]}:
            continue
        for g in ps.get("grants", []):
            if g["named_credential"] == p.named_credential and _operation_allowed(
                    g.get("methods", []), g.get("paths", []), _objects_dict(g.get("objects", {})), p):
                permitting.append(ps)
                break
    if not permitting:
        return False
    grantable = {s for ps in permitting for s in ps.get("scopes", [])} & set(user_scopes)
    return set(p.scopes) <= grantable


def _too_young(model: AuditModel, u: UserM) -> bool:
    if u.created_at is None:
        return False
    created = u.created_at if u.created_at.tzinfo else u.created_at.replace(tzinfo=dt.UTC)
    return created > model.now - dt.timedelta(days=model.policy.window_days)


def _objects_yaml(g: GrantM, hits: list[RequestPattern]) -> dict[str, Any]:
    """The grant's object permissions cut to what the window exercised: an object nobody touched goes, and
    of a used object only the permissions its methods needed stay (view_all / modify_all become the plain
    permission they stood in for). Field permissions stay: the log does not record fields."""
    needed: dict[str, set[str]] = {}
    for p in hits:
        obj = _pattern_object(p)
        if obj in g.objects:
            needed.setdefault(obj, set()).add(_OBJECT_PERMISSION.get((p.method or "GET").upper(), "edit"))
    out: dict[str, dict[str, Any]] = {}
    for name, perm in g.objects.items():
        if name not in needed:
            continue
        flags = {k: k in needed[name] for k in ("read", "create", "edit", "delete")}
        out[name] = {k: v for k, v in flags.items() if v}
        if perm.fields:
            out[name]["fields"] = dict(perm.fields)
    return out


def _unused_object_permissions(g: GrantM, kept: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, perm in g.objects.items():
        if name not in kept:
            continue
        out.extend(f"{name}.{k}" for k in _OBJECT_FLAGS if getattr(perm, k) and not kept[name].get(k))
    return out


def recommend(model: AuditModel, u: UserM) -> Recommendation:
    window = model.policy.window_days
    rec = Recommendation(u.id, window)
    if u.status != "active":
        rec.judged, rec.reason = False, f"user is {u.status}"
        return rec
    if _too_young(model, u):
        rec.judged, rec.reason = False, f"user is younger than the {window}-day window"
        return rec
    if not model.log_covers_window:
        since = f"starts {model.log_since.date().isoformat()}" if model.log_since else "is empty"
        rec.judged, rec.reason = False, f"the decision log {since}: it does not cover the {window}-day window yet"
        return rec
    patterns = model.usage[u.id].patterns if u.id in model.usage else []
    # a record without an API type (a token request) was decided on the named credential's, as the decider does
    patterns = [p if p.api_type or p.named_credential not in model.named_credentials
                else dataclasses.replace(p, api_type=model.named_credentials[p.named_credential].api_type)
                for p in patterns]
    used_scopes = {s for p in patterns for s in p.scopes}
    used_apis = {_api(p) for p in patterns}
    assigned = model.user_permission_sets(u)
    for ps in assigned:
        entry = _right_size(model, ps, u, patterns, used_scopes, used_apis, rec)
        expiry = next((a.expires_at for a in u.assignments if a.permission_set == ps.id), None)
        if entry is not None:
            rec.permission_sets.append(entry)
            rec.assignments.append({"permission_set": entry["id"], "until": expiry.isoformat()} if expiry else entry["id"])
    for scope in sorted(set(u.allowed_scopes) - used_scopes):
        rec.unused.append(UnusedItem("scope", None, {"scope": scope, "held_by": "integration_user"}))
    rec.user_scopes = sorted(set(u.allowed_scopes) & used_scopes)
    rec.proof = replay(rec, patterns)
    used = [ps for ps in assigned if any(_grant_matches(g, p) for g in ps.grants for p in patterns)]
    usage = model.usage.get(u.id)
    rec.time_window = recommend_window(model, usage.allowed if usage else 0, usage.call_hours if usage else [], used)
    return rec


def _right_size(model, ps: PermissionSetM, u: UserM, patterns, used_scopes, used_apis, rec) -> dict | None:
    shared = len(model.users_of(ps.id)) > 1
    new_id = f"{ps.id}-{u.id}-rightsized" if shared else f"{ps.id}-rightsized"
    grants = []
    for i, g in enumerate(ps.grants):
        hits = [p for p in patterns if _grant_matches(g, p)]
        if not hits:
            rec.unused.append(UnusedItem("named_credential", ps.id, {"grant": i, "named_credential": g.named_credential,
                                                                     "methods": g.methods, "paths": g.paths}))
            continue
        used_methods = sorted({(p.method or "").upper() for p in hits if p.method})
        used_paths = [pat for pat in g.paths if any(p.path and path_matches(pat, p.path) for p in hits)]
        used_objects = {o for o in (_pattern_object(p) for p in hits) if o}
        declared_methods = [m.upper() for m in g.methods] or ["*"]
        extra_methods = sorted(set(declared_methods) - set(used_methods)) if "*" not in declared_methods else ["*"]
        if extra_methods and used_methods:
            rec.unused.append(UnusedItem("methods", ps.id, {"grant": i, "named_credential": g.named_credential,
                                                            "unused": extra_methods, "used": used_methods}))
        extra_paths = [pat for pat in g.paths if pat not in used_paths]
        if extra_paths:
            rec.unused.append(UnusedItem("paths", ps.id, {"grant": i, "named_credential": g.named_credential,
                                                          "unused": extra_paths}))
        extra_objects = sorted(set(g.objects) - used_objects) if g.objects else []
        if extra_objects and used_objects:
            rec.unused.append(UnusedItem("objects", ps.id, {"grant": i, "unused": extra_objects}))
        entry: dict[str, Any] = {"named_credential": g.named_credential}
        if g.principal:
            entry["principal"] = g.principal
        entry["methods"] = used_methods or g.methods
        # path patterns that were never matched go; object-only requests keep the declared paths
        entry["paths"] = used_paths or g.paths
        objects = _objects_yaml(g, hits)
        if objects:
            entry["objects"] = objects
        narrowed = _unused_object_permissions(g, objects)
        if narrowed:
            rec.unused.append(UnusedItem("object_permissions", ps.id, {"grant": i, "unused": narrowed}))
        grants.append(entry)
    for scope in sorted(set(ps.scopes) - used_scopes):
        rec.unused.append(UnusedItem("scope", ps.id, {"scope": scope, "held_by": "permission_set"}))
    for api in sorted(set(ps.api_types) - used_apis):
        rec.unused.append(UnusedItem("api_type", ps.id, {"api_type": api}))
    if not grants:
        return None
    entry = {"id": new_id, "description": f"Right-sized from {ps.id}: what {u.id} used in the "
             f"{model.policy.window_days} days to {model.today.isoformat()}",
             "scopes": sorted(set(ps.scopes) & used_scopes),
             "api_types": sorted(set(ps.api_types) & used_apis) or sorted(used_apis & {"REST", "SOAP", "Bulk", "Streaming"})}
    if ps.max_token_lifetime_seconds:
        entry["max_token_lifetime"] = f"{min(ps.max_token_lifetime_seconds, model.policy.max_token_lifetime_seconds)}s"
    if ps.system_permissions:
        entry["system_permissions"] = list(ps.system_permissions)
    entry["grants"] = grants
    if ps.conditions:  # the replayed requests were allowed under them: a right-sized set keeps them, never widens
        entry["conditions"] = dict(ps.conditions)
    return entry


def replay(rec: Recommendation, patterns: list[RequestPattern]) -> dict[str, int]:
    """Replay the window's allowed requests against the recommendation; `would_deny` must be 0."""
    denied_patterns = denied_requests = total = 0
    for p in patterns:
        total += p.count
        if not permits(rec.permission_sets, rec.user_scopes, p):
            denied_patterns += 1
            denied_requests += p.count
    return {"replayed_requests": total, "replayed_patterns": len(patterns), "would_deny": denied_requests,
            "would_deny_patterns": denied_patterns}


def recommendations(model: AuditModel) -> list[Recommendation]:
    """Computed once per model: several rules report parts of the same right-sizing."""
    if not model.usage_loaded:
        return []
    if "recommendations" not in model.cache:
        model.cache["recommendations"] = [recommend(model, u) for u in sorted(model.users.values(), key=lambda x: x.id)]
    return model.cache["recommendations"]


def governance_yaml(model: AuditModel, recs: list[Recommendation]) -> dict[str, Any]:
    """The recommendations as a governance.yaml document (docs/governance-schema.md) for `govern apply`."""
    sets, users = [], []
    for rec in recs:
        if not rec.judged or rec.proof.get("would_deny"):
            continue
        u = model.users[rec.user]
        if not rec.unused:
            continue
        sets.extend(rec.permission_sets)
        entry: dict[str, Any] = {"id": u.id, "name": u.name or u.id}
        if u.owner:
            entry["owner"] = u.owner
        if u.justification:
            entry["justification"] = u.justification
        entry["status"] = u.status
        if u.review_date:
            entry["review_date"] = u.review_date.isoformat()
        if u.source_system:
            entry["source_system"] = u.source_system
        entry["auth"] = u.client_auth_method
        if u.client_auth_method == "private_key_jwt" and u.jwks:
            entry["jwks"] = u.jwks  # public keys: apply must not lose them
        if u.trust is not None:
            entry["trust"] = u.trust.model_dump(mode="json", exclude_none=True)  # nor a federated user's trust
        entry["ip_ranges"] = list(u.allowed_cidrs)
        entry["scopes"] = rec.user_scopes
        entry["permission_sets"] = rec.assignments
        users.append(entry)
    seen, unique_sets = set(), []
    for s in sets:
        if s["id"] not in seen:
            seen.add(s["id"])
            unique_sets.append(s)
    return {"apiVersion": "govern/v1", "kind": "Landscape", "integration_users": users, "permission_sets": unique_sets}
