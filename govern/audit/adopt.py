"""Adopt an org: a governance.yaml starting point from an imported org's integration surface
(`govern import salesforce DIR --to-landscape out.yaml`).

- Named and External Credentials become credentials and named credentials (a legacy Named Credential, which
  holds its own authentication, becomes both);
- permission sets (and profiles) with External Credential principal access become permission sets whose grants
  name the named credentials of that credential and the principal;
- Connected Apps become integration users: their OAuth scopes and trusted IP ranges, and the permission sets
  the app is assigned to, when adopted.

No secret value is written: not a password, a consumer secret, a token, a certificate, nor a parameter value that
looks like one. Whatever the metadata cannot decide (a system's owner, a token endpoint, methods and paths) is
left out or set to the narrowest valid value, with a `# DECIDE:` comment above the entity saying what to choose.
The output is accepted by `govern apply --dry-run` as it is.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from govern.audit.model import AuditModel, ConnectedAppM, CredentialM, NamedCredentialM
from govern.audit.secret_scan import value_kind

DECIDE = "# DECIDE:"
_NOT_ID = re.compile(r"[^a-z0-9._-]+")
# Connected App scope names (metadata) -> the OAuth scope a token request names
SALESFORCE_SCOPES = {"Api": "api", "Basic": "id", "Full": "full", "RefreshToken": "refresh_token",
                     "OfflineAccess": "refresh_token", "Web": "web", "Chatter": "chatter_api",
                     "CustomApplications": "visualforce", "CustomPermissions": "custom_permissions", "OpenID": "openid",
                     "Wave": "wave_api", "Pardot": "pardot_api", "Eclair": "eclair_api", "Address": "address",
                     "Email": "email", "Phone": "phone", "Profile": "profile", "Lightning": "lightning",
                     "Content": "content", "CDPIngestion": "cdp_ingest_api", "Interaction": "interaction_api"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass
class _Entity:
    doc: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Ids:
    """Unique governance.yaml ids for Salesforce names, per section."""

    taken: dict[str, set[str]] = field(default_factory=dict)
    of: dict[tuple[str, str], str] = field(default_factory=dict)

    def __call__(self, section: str, name: str) -> str:
        if (section, name) in self.of:
            return self.of[(section, name)]
        base = _NOT_ID.sub("-", name.lower()).strip("-._")[:190] or "unnamed"
        taken = self.taken.setdefault(section, set())
        out, n = base, 2
        while out in taken:
            out, n = f"{base}-{n}", n + 1
        taken.add(out)
        self.of[(section, name)] = out
        return out


def oauth_scope(name: str) -> str:
    """A Connected App's scope name as an OAuth scope (`RefreshToken` -> `refresh_token`)."""
    return SALESFORCE_SCOPES.get(name) or _CAMEL.sub("_", name).lower().replace(" ", "_")


def cidrs(start: str, end: str) -> list[str]:
    """The CIDR blocks covering an IP range given by its first and last address; [] when not a range."""
    try:
        first, last = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
        return [str(n) for n in ipaddress.summarize_address_range(first, last)]  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return []


def _https(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


def resolve(names, ref: str) -> str | None:
    """The component `ref` names among `names`: itself, or the one name that ends with `__ref` (a directory
    flattened into file names, as in an exported corpus: `pkg__externalCredentials__RewardAPI`)."""
    if ref in names:
        return ref
    found = [n for n in names if n.endswith(f"__{ref}")]
    return found[0] if len(found) == 1 else None


def _protocol(cred: CredentialM | None, legacy_protocol: str | None, notes: list[str]) -> dict[str, Any]:
    """govern's protocol (and its required fields) for a Salesforce authentication protocol."""
    sf = (legacy_protocol or (cred.protocol if cred else "") or "NoAuthentication").strip()
    config = cred.config if cred else {}
    token_url = next((v for k, v in config.items() if k.lower().startswith("authproviderurl") and _https(v)
                      and not value_kind(v)), None)
    # the OAuth flow: an AuthProtocolVariant parameter (ClientCredentialsWithClientSecret, ...)
    flow = next((v for k, v in config.items() if k.lower().startswith("authprotocolvariant:")), "")
    if sf.lower() == "oauth" and token_url and flow.lower() == "clientcredentialswithclientsecret":
        return {"protocol": "oauth2_client_credentials", "token_url": token_url}
    if sf.lower() == "password" or sf.lower() == "basic":
        notes.append("username and password in Salesforce: store the password with `govern secrets put "
                     "CREDENTIAL --principal P --field password`, and prefer OAuth")
        return {"protocol": "basic"}
    header = next((k.split(":", 1)[1] for k in config if k.lower().startswith("authheader:") and k.split(":", 1)[1]),
                  "Authorization")
    if sf.lower() == "custom":
        notes.append(f"a custom header ({header}) in Salesforce: store its value with `govern secrets put`")
        return {"protocol": "custom_header", "header": header}
    notes.append(f"Salesforce authenticates with {sf}"
                 + (f" through {config['AuthProvider']}" if config.get("AuthProvider") else "")
                 + ", whose token endpoint is not in the metadata: choose the protocol (oauth2_client_credentials, "
                 "oauth2_jwt_bearer, oauth2_refresh_token with token_url) or keep the header and store its value")
    return {"protocol": "custom_header", "header": "Authorization"}


def to_landscape(model: AuditModel, org: str, *, directory: str = "", now: dt.datetime | None = None) -> str:
    """governance.yaml text for the org's integration surface (see the module's docstring)."""
    ids = _Ids()
    systems: list[_Entity] = []
    credentials: list[_Entity] = []
    named: list[_Entity] = []
    sets: list[_Entity] = []
    users: list[_Entity] = []
    skipped: list[str] = []

    def system_for(name: str, scopes: list[str], kind: str = "generic", note: str = "") -> str:
        sid = ids("systems", name)
        doc: dict[str, Any] = {"id": sid, "name": name, "kind": kind}
        if scopes:
            doc["scopes"] = scopes
        notes = [f"the system behind {note or name}: set its name, kind and contract (owner, escalation, runbook, "
                 "daily_api_budget)"]
        systems.append(_Entity(doc, notes))
        return sid

    # credentials: each External Credential, and each legacy Named Credential (its own authentication)
    cred_ids: dict[str, str] = {}
    principals_of: dict[str, list[str]] = {}

    def add_credential(name: str, cred: CredentialM | None, nc: NamedCredentialM | None) -> str:
        notes: list[str] = []
        scopes = sorted({s for s in (cred.scopes if cred else []) if s and not any(c.isspace() for c in s)})
        system = system_for(name, scopes, note=f"credential {name}")
        cid = ids("credentials", name)
        doc: dict[str, Any] = {"id": cid, "system": system}
        doc.update(_protocol(cred, nc.protocol if nc is not None else None, notes))
        if scopes and doc["protocol"].startswith("oauth2_"):
            doc["scopes"] = scopes
        names = [p.name for p in (cred.principals if cred else []) if p.name]
        if cred and any(p.kind == "per_user" for p in cred.principals):
            notes.append("per-user principals in Salesforce (each user authorises): declared as named principals; "
                         "bind each to its integration user (principal_type: per_user, user: ...) if govern should "
                         "keep per-user tokens")
        if nc is not None and (nc.principal_type or "").lower() == "peruser":
            notes.append("a per-user legacy Named Credential: decide which integration user each principal belongs to")
        if not names:
            names = ["default"]
        principal_ids = []
        seen: set[str] = set()
        for n in names:
            if n not in seen:
                seen.add(n)
                principal_ids.append(n)
        doc["principals"] = [{"name": n} for n in principal_ids]
        principals_of[name] = principal_ids
        notes.append("no secret was copied: store each principal's secret with `govern secrets put` after apply")
        credentials.append(_Entity(doc, notes))
        cred_ids[name] = cid
        return cid

    for name, cred in sorted(model.credentials.items()):
        if name in model.named_credentials and model.named_credentials[name].legacy:
            continue  # a legacy Named Credential's own scopes: adopted with it below
        add_credential(name, cred, None)
    nc_of_credential: dict[str, list[str]] = {}
    for name, nc in sorted(model.named_credentials.items()):
        url = nc.url.strip()
        if value_kind(url):
            skipped.append(f"named credential {name}: its URL holds a secret (store the URL as a secret)")
            continue
        if not _https(url):
            skipped.append(f"named credential {name}: its URL {url!r} is not an http(s) endpoint")
            continue
        notes: list[str] = []
        if nc.legacy:
            cred_name = name
            cid = add_credential(name, model.credentials.get(name), nc)
            notes.append("a legacy Named Credential (authentication inline): adopted as a credential of its own")
        else:
            cred_name = resolve(cred_ids, nc.credential or "") or nc.credential or ""
            if cred_name not in cred_ids:
                skipped.append(f"named credential {name}: its External Credential {cred_name or '(none)'} is not in "
                               "the metadata")
                continue
            cid = cred_ids[cred_name]
        nid = ids("named_credentials", name)
        doc = {"id": nid, "credential": cid, "url": url}
        if urlsplit(url).scheme == "http":
            notes.append("plain http: use the https endpoint (govern refuses http in production)")
        notes.append("restrict the methods and paths this endpoint may be called with (methods: [...], paths: [...])")
        named.append(_Entity(doc, notes))
        nc_of_credential.setdefault(cred_name, []).append(nid)

    # permission sets with External Credential principal access
    set_ids: dict[str, str] = {}
    for name, ps in sorted(model.permission_sets.items()):
        if not ps.principal_access:
            continue
        grants, notes = [], []
        for access in ps.principal_access:
            ref, _, principal = access.partition("-")
            cred_name = resolve(cred_ids, ref) or ref
            if cred_name not in cred_ids or principal not in principals_of.get(cred_name, []):
                notes.append(f"principal access {access}: no adopted credential {cred_name} with principal "
                             f"{principal or '(none)'}; not granted")
                continue
            for nid in nc_of_credential.get(cred_name, []):
                grants.append({"named_credential": nid, "principal": principal})
            if not nc_of_credential.get(cred_name):
                notes.append(f"principal access {access}: no adopted named credential uses {cred_name}; not granted")
        pid = ids("permission_sets", name)
        doc = {"id": pid, "description": (ps.description or ps.label or name)[:500]}
        if grants:
            doc["grants"] = grants
            notes.append("each grant allows every method and path: narrow them (methods, paths, objects)")
        doc["api_types"] = ["REST"]
        notes.append("api_types: REST only; add SOAP or Bulk if the integration needs them")
        sets.append(_Entity(doc, notes))
        set_ids[name] = pid

    # integration users from Connected Apps
    org_scopes: set[str] = set()
    for app in model.connected_apps.values():
        org_scopes |= {oauth_scope(s) for s in app.scopes if s.strip()}
    org_system = system_for(org, sorted(org_scopes), "salesforce", note=f"the Salesforce org {org}") \
        if model.connected_apps else None
    for name, app in sorted(model.connected_apps.items()):
        users.append(_user(app, name, ids, set_ids, org_system))

    return _render(org, directory, now or model.now, skipped, systems, credentials, named, users, sets)


def _user(app: ConnectedAppM, name: str, ids: Callable[[str, str], str], set_ids: dict[str, str],
          org_system: str | None) -> _Entity:
    notes: list[str] = []
    doc: dict[str, Any] = {"id": ids("integration_users", name), "name": app.label or name}
    if app.contact and "@" in app.contact and not value_kind(app.contact):
        doc["owner"] = app.contact
        notes.append("owner: the app's contact email; confirm the accountable team")
    else:
        notes.append("set owner: the team accountable for this integration")
    if app.description:
        doc["justification"] = app.description[:500]
    else:
        notes.append("set justification: why this integration needs access")
    ranges = sorted({c for start, end in app.ip_ranges for c in cidrs(start, end)})
    if ranges:
        doc["ip_ranges"] = ranges
    else:
        notes.append("the app trusts no IP range: set ip_ranges to the integration's egress addresses")
    if app.ip_relaxation and app.ip_relaxation.upper() != "ENFORCE":
        notes.append(f"the app's IP policy is {app.ip_relaxation}: govern enforces ip_ranges on every call")
    scopes = sorted({oauth_scope(s) for s in app.scopes if s.strip()})
    if scopes:
        doc["scopes"] = scopes
    if {"full", "refresh_token"} & set(scopes):
        notes.append(f"scopes {', '.join(s for s in scopes if s in ('full', 'refresh_token'))}: keep only what the "
                     "integration needs")
    assigned = [set_ids[p] for p in app.permission_sets if p in set_ids]
    if assigned:
        doc["permission_sets"] = assigned
    elif app.permission_sets:
        notes.append(f"assigned in Salesforce to {', '.join(app.permission_sets)}, which grant no External Credential "
                     "principal: assign govern permission sets")
    if app.has_certificate:
        notes.append("the app has a certificate (JWT bearer): register the public key as jwks with "
                     "auth: private_key_jwt")
    if org_system:
        notes.append(f"calls into {org_system}; set source_system to the system this integration runs in")
    return _Entity(doc, notes)


def _block(section: str, entities: list[_Entity]) -> list[str]:
    if not entities:
        return [f"{section}: []", ""]
    lines = [f"{section}:"]
    for e in entities:
        lines += [f"  {DECIDE} {n}" for n in e.notes]
        text = yaml.safe_dump([e.doc], sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
        lines += [f"  {line}" for line in text.rstrip("\n").splitlines()]
    return [*lines, ""]


def _render(org: str, directory: str, now: dt.datetime, skipped: list[str], systems, credentials, named, users,
            sets) -> str:
    head = [f"# governance.yaml adopted from the Salesforce org {org!r}"
            + (f" ({directory})" if directory else "") + f" on {now.date().isoformat()},",
            "# by `govern import salesforce DIR --to-landscape FILE`. A starting point, not a decision:",
            f"# each `{DECIDE}` line says what the metadata could not tell. No secret value was copied.",
            "# Check it with `govern apply -f FILE --dry-run`, then `govern audit` after applying it."]
    if skipped:
        head.append("# Not adopted:")
        head += [f"#   - {s}" for s in skipped]
    lines = [*head, "apiVersion: govern/v1", "kind: Landscape", ""]
    lines += _block("systems", systems)
    lines += _block("credentials", credentials)
    lines += _block("named_credentials", named)
    lines += _block("integration_users", users)
    lines += _block("permission_sets", sets)
    return "\n".join(lines).rstrip("\n") + "\n"
