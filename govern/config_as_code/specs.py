"""Normalised specs: one plain dict per entity, the same shape whether it came from YAML or the database.

A landscape is ``{kind: {external_id: spec}}``. Specs hold only JSON-like values (str, int, float,
bool, None, lists, dicts), normalised so that equal meaning gives equal dicts: sets (scopes, CIDRs,
methods...) are sorted and deduplicated, durations are seconds, sizes are bytes, dates ISO strings.
The planner compares specs field by field; `to_document` writes them back as governance.yaml,
leaving out fields that hold their default.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

from govern.config_as_code import schema as s
from govern.config_as_code.units import format_duration, format_size

KINDS = ("system", "credential", "named_credential", "integration_user", "permission_set")
SECTION_OF = {"system": "systems", "credential": "credentials", "named_credential": "named_credentials",
              "integration_user": "integration_users", "permission_set": "permission_sets"}
KIND_OF = {v: k for k, v in SECTION_OF.items()}

Spec = dict[str, Any]
Landscape = dict[str, dict[str, Spec]]


def empty_landscape() -> Landscape:
    return {kind: {} for kind in KINDS}


def jsonable(value: Any) -> Any:
    """Free-form mappings (sla, jwks) may hold YAML dates; specs and JSON columns want plain values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _set(values) -> list:
    return sorted(set(values))


def _day_index(window: dict) -> tuple:
    return (s.DAYS.index(window["day"]) if window["day"] in s.DAYS else 9, window["start"], window["end"])


def default_client_auth(protocol: str | None) -> str | None:
    return "client_secret_basic" if protocol in s.OAUTH2 else None


def system_spec(doc: s.SystemDoc) -> Spec:
    c = doc.contract
    return {
        "name": doc.name or doc.id, "kind": doc.kind, "description": doc.description, "scopes": _set(doc.scopes),
        "owner": c.owner, "escalation": c.escalation, "sla": jsonable(c.sla),
        "rate_limit_per_minute": c.rate_limit_per_minute, "daily_api_budget": c.daily_api_budget,
        "max_concurrent_calls": c.max_concurrent_calls, "api_version_policy": c.api_version_policy,
        "maintenance_windows": sorted((w.model_dump() for w in c.maintenance_windows), key=_day_index),
        "runbook": c.runbook, "schema_links": list(c.schema_links), "error_codes": dict(sorted(c.error_codes.items())),
    }


def rotation_spec(rotation: s.Rotation | None) -> dict:
    """Stored as canonical strings ({"every": "90d", "overlap": "24h"} or {"cron": ...}), as tables.py documents."""
    if rotation is None:
        return {}
    out: dict[str, Any] = {}
    if rotation.every is not None:
        out["every"] = format_duration(rotation.every)
    if rotation.cron is not None:
        out["cron"] = rotation.cron
    if rotation.overlap is not None:
        out["overlap"] = format_duration(rotation.overlap)
    return out


def credential_spec(doc: s.CredentialDoc) -> Spec:
    return {
        "system": doc.system, "protocol": doc.protocol, "token_url": doc.token_url, "authorize_url": doc.authorize_url,
        "client_id": doc.client_id, "client_auth": doc.client_auth or default_client_auth(doc.protocol),
        "scopes": _set(doc.scopes), "audience": doc.audience, "resource": list(doc.resource),
        "token_params": dict(sorted(doc.token_params.items())), "leeway": doc.leeway, "header": doc.header,
        "principal_type": doc.principal_type,
        "principals": sorted(({"name": p.name, "subject": p.subject,
                               "user": p.user if doc.principal_type == "per_user" else None}
                              for p in doc.principals), key=lambda p: p["name"]),
        "refresh_token_policy": doc.refresh_token_policy, "rotation": rotation_spec(doc.rotation),
        "expiry": expiry_spec(doc),
        "revocation_endpoint": doc.revocation_endpoint, "revocation_client_auth": doc.revocation_client_auth,
    }


def expiry_spec(doc: s.CredentialDoc) -> dict:
    """Only the keys the file sets: {"client_secret_expires": "2027-03-31", "refresh_token_lifetime": seconds,
    "refresh_token_idle": seconds} (docs/expiry.md); stored as this JSON."""
    out: dict[str, Any] = {}
    if doc.client_secret_expires is not None:
        out["client_secret_expires"] = doc.client_secret_expires.isoformat()
    if doc.refresh_token_lifetime is not None:
        out["refresh_token_lifetime"] = float(doc.refresh_token_lifetime)
    if doc.refresh_token_idle is not None:
        out["refresh_token_idle"] = float(doc.refresh_token_idle)
    return out


def named_credential_spec(doc: s.NamedCredentialDoc) -> Spec:
    return {
        "credential": doc.credential, "url": doc.url, "api_version": doc.api_version, "api_type": doc.api_type,
        # Only the keys the file sets, with durations in seconds: the JSON the proxy reads back as the same value.
        "timeout": float(doc.timeout), "retry": doc.retry.stored(), "circuit_breaker": doc.circuit_breaker.stored(),
        "methods": _set(m.upper() for m in doc.methods), "paths": _set(doc.paths),
        "during_maintenance": doc.during_maintenance, "max_body": doc.max_body,
    }


def integration_user_spec(doc: s.IntegrationUserDoc) -> Spec:
    return {
        "name": doc.name or doc.id, "owner": doc.owner, "justification": doc.justification, "status": doc.status,
        "review_date": doc.review_date.isoformat() if doc.review_date else None, "source_system": doc.source_system,
        "auth": doc.auth, "jwks": jsonable(doc.jwks), "ip_ranges": _set(doc.ip_ranges), "scopes": _set(doc.scopes),
        "permission_sets": sorted(({"permission_set": a.permission_set,
                                    "until": a.until.isoformat() if a.until else None}
                                   for a in doc.permission_sets), key=lambda a: a["permission_set"]),
        "rotation": rotation_spec(doc.rotation), "trust": trust_spec(doc.trust),
    }


def trust_spec(trust: s.FederationTrust | None) -> dict:
    """Every key, defaults included, so that equal trusts give equal specs (and equal stored JSON)."""
    return trust.model_dump(mode="json", exclude_none=True) if trust is not None else {}


def grant_spec(doc: s.GrantDoc) -> Spec:
    return {"named_credential": doc.named_credential, "principal": doc.principal,
            "methods": _set(m.upper() for m in doc.methods), "paths": _set(doc.paths),
            "objects": {name: {**perm.model_dump(exclude={"fields"}), "fields": dict(sorted(perm.fields.items()))}
                        for name, perm in sorted(doc.objects.items())}}


def permission_set_spec(doc: s.PermissionSetDoc) -> Spec:
    return {
        "description": doc.description, "scopes": _set(doc.scopes), "api_types": _set(doc.api_types),
        "max_token_lifetime": int(doc.max_token_lifetime), "overdraft": doc.overdraft,
        "system_permissions": _set(doc.system_permissions), "grants": [grant_spec(g) for g in doc.grants],
        "conditions": conditions_spec(doc.conditions),
    }


def conditions_spec(conditions: s.AccessConditions | None) -> dict:
    """The set keys only (no empty lists), time zones included, so equal conditions give equal specs."""
    dump = conditions.model_dump(mode="json", exclude_none=True) if conditions is not None else {}
    return {k: v for k, v in dump.items() if v != []}


SPEC_OF: dict[str, Callable[[Any], dict[str, Any]]] = {
    "system": system_spec, "credential": credential_spec, "named_credential": named_credential_spec,
    "integration_user": integration_user_spec, "permission_set": permission_set_spec}


# --- back to governance.yaml ------------------------------------------------------------------------

def _put(out: dict, key: str, value: Any, default: Any = None) -> None:
    if value != default and value not in (None, [], {}):
        out[key] = value


def _system_doc(ext_id: str, spec: Spec) -> dict:
    out: dict[str, Any] = {"id": ext_id}
    _put(out, "name", spec["name"], ext_id)
    _put(out, "kind", spec["kind"], "generic")
    _put(out, "description", spec["description"], "")
    _put(out, "scopes", spec["scopes"])
    contract: dict[str, Any] = {}
    _put(contract, "owner", spec["owner"])
    _put(contract, "escalation", spec["escalation"])
    _put(contract, "sla", spec["sla"])
    _put(contract, "rate_limit_per_minute", spec["rate_limit_per_minute"])
    _put(contract, "daily_api_budget", spec["daily_api_budget"])
    _put(contract, "max_concurrent_calls", spec.get("max_concurrent_calls"))
    _put(contract, "api_version_policy", spec["api_version_policy"])
    _put(contract, "maintenance_windows", spec["maintenance_windows"])
    _put(contract, "runbook", spec["runbook"])
    _put(contract, "schema_links", spec["schema_links"])
    _put(contract, "error_codes", spec["error_codes"])
    _put(out, "contract", contract)
    return out


def _credential_doc(ext_id: str, spec: Spec) -> dict:
    out: dict[str, Any] = {"id": ext_id, "system": spec["system"], "protocol": spec["protocol"]}
    for key in ("token_url", "authorize_url", "client_id"):
        _put(out, key, spec[key])
    _put(out, "client_auth", spec["client_auth"], default_client_auth(spec["protocol"]))
    for key in ("scopes", "audience", "resource", "token_params"):
        _put(out, key, spec.get(key))
    if spec.get("leeway") is not None:
        out["leeway"] = format_duration(spec["leeway"])
    _put(out, "header", spec["header"])
    _put(out, "principal_type", spec["principal_type"], "named")
    principals = []
    for p in spec["principals"]:
        item = {"name": p["name"]}
        _put(item, "subject", p["subject"])
        _put(item, "user", p["user"])
        principals.append(item)
    _put(out, "principals", principals)
    _put(out, "refresh_token_policy", spec["refresh_token_policy"])
    _put(out, "rotation", spec["rotation"])
    expiry = spec.get("expiry") or {}
    _put(out, "client_secret_expires", expiry.get("client_secret_expires"))
    for key in ("refresh_token_lifetime", "refresh_token_idle"):
        if expiry.get(key) is not None:
            out[key] = format_duration(expiry[key])
    _put(out, "revocation_endpoint", spec.get("revocation_endpoint"))
    _put(out, "revocation_client_auth", spec.get("revocation_client_auth"))
    return out


DURATION_KEYS = frozenset({"backoff", "max_backoff", "max_retry_after", "reset", "window"})


def _named_credential_doc(ext_id: str, spec: Spec) -> dict:
    out: dict[str, Any] = {"id": ext_id, "credential": spec["credential"], "url": spec["url"]}
    _put(out, "api_version", spec["api_version"])
    _put(out, "api_type", spec["api_type"], "REST")
    _put(out, "timeout", format_duration(spec["timeout"]), "10s")
    _put(out, "retry", {k: format_duration(v) if k in DURATION_KEYS else v for k, v in spec["retry"].items()})
    _put(out, "circuit_breaker", {k: format_duration(v) if k in DURATION_KEYS else v
                                  for k, v in spec["circuit_breaker"].items()})
    _put(out, "methods", spec["methods"])
    _put(out, "paths", spec["paths"])
    _put(out, "during_maintenance", spec["during_maintenance"], "refuse")
    _put(out, "max_body", format_size(spec["max_body"]), "10MB")
    return out


def _integration_user_doc(ext_id: str, spec: Spec) -> dict:
    out: dict[str, Any] = {"id": ext_id}
    _put(out, "name", spec["name"], ext_id)
    for key in ("owner", "justification"):
        _put(out, key, spec[key])
    _put(out, "status", spec["status"], "active")
    _put(out, "review_date", spec["review_date"])
    _put(out, "source_system", spec["source_system"])
    _put(out, "auth", spec["auth"], "client_secret_basic")
    _put(out, "jwks", spec["jwks"])
    _put(out, "ip_ranges", spec["ip_ranges"])
    _put(out, "scopes", spec["scopes"])
    _put(out, "permission_sets", [a["permission_set"] if a["until"] is None else dict(a)
                                  for a in spec["permission_sets"]])
    _put(out, "rotation", spec["rotation"])
    _put(out, "trust", spec.get("trust"))
    return out


def _permission_set_doc(ext_id: str, spec: Spec) -> dict:
    out: dict[str, Any] = {"id": ext_id}
    _put(out, "description", spec["description"], "")
    _put(out, "scopes", spec["scopes"])
    _put(out, "api_types", spec["api_types"])
    _put(out, "max_token_lifetime", format_duration(spec["max_token_lifetime"]), "1h")
    _put(out, "overdraft", spec["overdraft"], False)
    _put(out, "system_permissions", spec["system_permissions"])
    _put(out, "conditions", spec.get("conditions"))
    grants = []
    for g in spec["grants"]:
        item: dict[str, Any] = {"named_credential": g["named_credential"]}
        _put(item, "principal", g["principal"])
        _put(item, "methods", g["methods"])
        _put(item, "paths", g["paths"])
        objects = {}
        for name, perm in g["objects"].items():
            objects[name] = {k: v for k, v in perm.items() if v not in (False, {})}
        _put(item, "objects", objects)
        grants.append(item)
    _put(out, "grants", grants)
    return out


_DOC_OF = {"system": _system_doc, "credential": _credential_doc, "named_credential": _named_credential_doc,
           "integration_user": _integration_user_doc, "permission_set": _permission_set_doc}


def to_document(landscape: Landscape) -> dict:
    """The governance.yaml mapping for a landscape: sections in a fixed order, entities sorted by id."""
    doc: dict[str, Any] = {"apiVersion": s.API_VERSION, "kind": "Landscape"}
    for kind in KINDS:
        doc[SECTION_OF[kind]] = [_DOC_OF[kind](ext_id, spec) for ext_id, spec in sorted(landscape.get(kind, {}).items())]
    return doc
