"""Unsafe configuration: secrets outside the vault, missing contract, API versions, unknown metadata
(seed §6, §11, §18, §20 and the anti-patterns "Storing credentials in code", "No runbooks")."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

from govern.audit.model import AuditModel, Location
from govern.audit.registry import Hit, rule
from govern.audit.secret_scan import safe_url, scan

S6_VAULT = '§6 Use Named Credentials: "Never store credentials in Custom Settings, custom metadata, or Apex code"'
S6_NEW = '§6: "External Credentials (new model) support multiple authentication protocols"'
S11 = '§11 Version Your APIs: "Unversioned APIs create upgrade nightmares. Always version from day one."'
S18 = '§18 Document Integration Contracts: "Escalation contacts — Who to call when things break"'
S18_RATE = '§18: "Rate limits — Throttling expectations"; anti-pattern "Ignoring API limits — Budget API calls"'
S20 = '§20 Maintain Integration Runbooks: "Every production integration should have a runbook"'
OWNER = 'Anti-patterns: "No monitoring or owner"; §1 "Start with the Business Requirement"'
VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?$")


@rule("GOV-SECRET-001", "Secret-looking value outside the vault", "critical", rationale=S6_VAULT,
      remediation="Move the value into the secret store (`govern secrets put CREDENTIAL --field F`, or a Salesforce "
      "External Credential principal), rotate it, since it was exposed, and remove it from config and version control.")
def secret_outside_vault(model: AuditModel):
    holders: list[tuple[str, str, dict[str, Any], Location | None]] = [
        ("system", s.id, s.config, None) for s in model.systems.values()]
    holders += [("credential", c.id, c.config, c.location) for c in model.credentials.values()]
    holders += [("named_credential", n.id, {"url": n.url, **n.config}, n.location) for n in model.named_credentials.values()]
    # inline metadata secrets below share the subject, so one finding per named credential results
    for nc in model.named_credentials.values():
        if nc.inline_secrets:
            yield Hit("named_credential", nc.id, f"named credential {nc.id} stores "
                      f"{', '.join(n for n, _ in nc.inline_secrets)} in metadata",
                      {"elements": [n for n, _ in nc.inline_secrets]}, nc.inline_secrets[0][1] or nc.location)
    for kind, subject, config, loc in holders:
        found = sorted(set(scan(config)))
        if found:
            yield Hit(kind, subject, f"{kind} {subject} holds secret-looking values at "
                      f"{', '.join(w for w, _ in found)}", {"fields": [{"field": w, "kind": k} for w, k in found]}, loc)
    for app in model.connected_apps.values():
        if app.inline_secrets:
            yield Hit("connected_app", app.id, f"connected app {app.id} stores "
                      f"{', '.join(n for n, _ in app.inline_secrets)} in metadata",
                      {"elements": [n for n, _ in app.inline_secrets]}, app.inline_secrets[0][1] or app.location)


@rule("GOV-SECRET-002", "Password authentication in a named credential", "high", rationale=S6_VAULT,
      remediation="Use an External Credential with OAuth (JWT bearer or client credentials) instead of a username "
      "and password.")
def password_auth(model: AuditModel):
    for nc in model.named_credentials.values():
        if nc.legacy and (nc.protocol or "").lower() == "password":
            yield Hit("named_credential", nc.id, f"legacy named credential {nc.id} authenticates with a username and "
                      f"password ({nc.principal_type})", {"protocol": nc.protocol, "principalType": nc.principal_type},
                      nc.element_lines.get("protocol", nc.location))
    for c in model.credentials.values():
        if c.protocol.lower() in ("basic", "password"):
            yield Hit("credential", c.id, f"credential {c.id} uses password (basic) authentication",
                      {"protocol": c.protocol}, c.location)


@rule("GOV-SECRET-003", "Legacy named credential", "low", rationale=S6_NEW,
      remediation="Migrate to the new model: a Named Credential that references an External Credential with "
      "principals and permission-set access.")
def legacy_named_credential(model: AuditModel):
    for nc in model.named_credentials.values():
        if nc.legacy and (nc.protocol or "NoAuthentication") != "NoAuthentication":
            yield Hit("named_credential", f"{nc.id}#legacy", f"{nc.id} uses the legacy named credential model "
                      f"({nc.protocol})", {"protocol": nc.protocol}, nc.element_lines.get("protocol", nc.location))


@rule("GOV-SECRET-004", "Connected app without a certificate", "low", rationale=S6_VAULT,
      remediation="Upload a certificate and use the OAuth 2.0 JWT bearer flow (RFC 7523) instead of a shared "
      "consumer secret.")
def app_without_certificate(model: AuditModel):
    for app in model.connected_apps.values():
        if app.scopes and not app.has_certificate:
            yield Hit("connected_app", f"{app.id}#certificate", f"connected app {app.id} has no certificate",
                      {"certificate": False}, app.location)


def weaknesses(described: dict[str, Any]) -> list[str]:
    """Why a described certificate's key or signature is weak (NIST SP 800-131A: RSA and DSA under 2048 bits,
    EC under 256 bits, SHA-1 and MD5 signatures), or nothing."""
    out = []
    if (described.get("signature_hash") or "").lower() in ("md5", "sha1"):
        out.append(f"signed with {described['signature_hash']}")
    size, kind = described.get("key_size") or 0, described.get("key_type")
    if kind in ("rsa", "dsa") and size < 2048:
        out.append(f"{kind.upper()} key of {size} bits")
    if kind == "ec" and size < 256:
        out.append(f"EC key of {size} bits")
    return out


@rule("GOV-SECRET-005", "Expired or weak certificate", "high", rationale=S6_VAULT,
      remediation="Issue a new key pair (RSA 2048+ or EC P-256, SHA-256 signature), upload the certificate and rotate "
      "the JWT signing key.")
def bad_certificate(model: AuditModel):
    for app in model.connected_apps.values():
        c = app.certificate
        if not c:
            continue
        problems = []
        if c.get("error"):
            problems.append(c["error"])
        else:
            if c["not_after"] < model.now.isoformat():
                problems.append(f"expired {c['not_after'][:10]}")
            problems += weaknesses(c)
        if problems:
            yield Hit("connected_app", f"{app.id}#cert", f"certificate of connected app {app.id}: {'; '.join(problems)}",
                      {"certificate": c, "problems": problems}, app.element_lines.get("certificate", app.location))


@rule("GOV-SECRET-006", "Certificate near expiry", "medium", rationale=S6_VAULT,
      remediation="Issue a new key pair before the certificate expires, upload the new certificate next to the old "
      "one, switch the JWT signing key, then remove the old certificate (a staged rotation, no downtime).")
def certificate_near_expiry(model: AuditModel):
    soon = (model.now + dt.timedelta(days=model.policy.certificate_warning_days)).isoformat()
    for app in model.connected_apps.values():
        c = app.certificate
        if c and not c.get("error") and model.now.isoformat() <= c["not_after"] < soon:
            yield Hit("connected_app", f"{app.id}#cert-expiry", f"certificate of connected app {app.id} expires "
                      f"{c['not_after'][:10]}", {"not_after": c["not_after"],
                                                 "warning_days": model.policy.certificate_warning_days},
                      app.element_lines.get("certificate", app.location))


@rule("GOV-SECRET-007", "Expiring client secret without a rotation schedule", "medium", rationale=S6_VAULT,
      remediation="Declare `rotation:` on the credential (e.g. `every: 180d` with an `overlap:`) so that govern "
      "replaces the client secret before the provider's expiry date; until then, renew it by hand before the "
      "date `govern expiry` shows (docs/expiry.md).")
def expiry_without_rotation(model: AuditModel):
    for c in model.credentials.values():
        expires = (c.expiry or {}).get("client_secret_expires")
        if not expires or c.rotation:
            continue
        days = (dt.date.fromisoformat(expires) - model.now.date()).days
        when = f"expired on {expires}" if days < 0 else f"expires on {expires} ({days} days)"
        yield Hit("credential", c.id, f"the client secret of credential {c.id} {when} and no rotation is scheduled",
                  {"client_secret_expires": expires, "days_left": days, "rotation": None}, c.location)


def _contract(rule_id: str, attr: str, what: str):
    def check(model: AuditModel):
        for s in model.systems.values():
            if not getattr(s, attr):
                yield Hit("system", s.id, f"system {s.id} has no {what}", {attr: None})
    return check


for _id, _attr, _what, _sev, _why, _fix in (
    ("GOV-GOV-001", "owner", "owner", "medium", OWNER, "Set contract.owner: the team accountable for the integration."),
    ("GOV-GOV-002", "escalation_contact", "escalation contact", "medium", S18,
     "Set contract.escalation: who to call when the integration breaks."),
    ("GOV-GOV-003", "runbook_url", "runbook", "medium", S20, "Write a runbook and set contract.runbook to its URL."),
    ("GOV-GOV-004", "daily_api_budget", "daily API budget", "low", S18_RATE,
     "Set contract.daily_api_budget so govern can enforce and alert on API consumption."),
):
    rule(_id, f"System without {_what}", _sev, rationale=_why, remediation=_fix)(_contract(_id, _attr, _what))


@rule("GOV-GOV-005", "Integration user without owner or justification", "medium", rationale=OWNER,
      remediation="Record the owning team and the business justification on the integration user.")
def user_without_owner(model: AuditModel):
    for u in model.users.values():
        missing = [k for k in ("owner", "justification") if not getattr(u, k)]
        if missing:
            yield Hit("integration_user", u.id, f"{u.id} has no {' or '.join(missing)}", {"missing": missing})


def _version(text: str | None) -> float | None:
    if not text:
        return None
    m = VERSION.match(text.strip())
    if not m:
        return None
    return float(f"{m.group(1)}.{m.group(2) or 0}")


# Salesforce's platform API carries its version in the path: /services/data/v61.0, /services/async/61.0 (Bulk 1.0),
# /services/Soap/u/61.0. Other Salesforce hosts (api.status.salesforce.com/v1, a Heroku app) have versions of their
# own that say nothing about the platform's retired versions.
PLATFORM_VERSION = re.compile(r"/services/(?:data/v|async/|Soap/[a-zA-Z]/)(\d+)(?:\.(\d+))?(?:/|$)")
PLATFORM_HOST = re.compile(r"(?:[\w-]+\.)*(?:my\.salesforce\.com|force\.com|salesforce\.mil|"
                           r"(?:login|test|[a-z]{2,4}\d+)\.salesforce\.com)", re.I)


def salesforce_platform(url: str) -> bool:
    """Whether `url` is Salesforce's platform API (an org's My Domain, login, or an instance), whose versions
    Salesforce retires; another service on a salesforce.com host is not."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return False
    return bool(PLATFORM_HOST.fullmatch(host)) or bool(re.match(r"/services/(?:data|async|Soap)(?:/|$)", parts.path))


def platform_version(nc) -> float | None:
    """The platform API version a named credential pins: its api_version (govern), or the one in its URL."""
    m = PLATFORM_VERSION.search(nc.url)
    return _version(nc.api_version) or (float(f"{m.group(1)}.{m.group(2) or 0}") if m else None)


@rule("GOV-VER-001", "Unpinned API version", "medium", rationale=S11,
      remediation="Pin the Salesforce API version on the named credential (api_version: v61.0 in governance.yaml, "
      "or /services/data/v61.0 in the endpoint).")
def unpinned(model: AuditModel):
    for nc in model.named_credentials.values():
        if not salesforce_platform(nc.url):
            continue  # only Salesforce's platform versions are known and retired; other APIs cannot be judged
        if model.source == "salesforce" and "/services/" not in nc.url:
            continue  # a metadata endpoint at the org's root: the Apex callout path carries the version
        if platform_version(nc) is None:
            yield Hit("named_credential", f"{nc.id}#version", f"{nc.id} calls the Salesforce API without a version",
                      {"url": safe_url(nc.url)}, nc.element_lines.get("endpoint", nc.location))


@rule("GOV-VER-002", "Deprecated API version", "high", rationale=S11,
      remediation="Upgrade to a supported API version (Salesforce retired versions 21.0 to 30.0) and re-test.")
def deprecated(model: AuditModel):
    for nc in model.named_credentials.values():
        if not salesforce_platform(nc.url):
            continue
        v = platform_version(nc)
        if v is not None and v < model.policy.min_salesforce_api_version:
            yield Hit("named_credential", f"{nc.id}#deprecated", f"{nc.id} pins retired API version {v}",
                      {"api_version": v, "minimum": model.policy.min_salesforce_api_version},
                      nc.element_lines.get("endpoint", nc.location))


@rule("GOV-META-001", "Unknown metadata element", "info", rationale='§10 Handle Partial Failures: unknown input is kept '
      'and reported, never dropped silently', remediation="Check whether the element affects access; if it does, "
      "review it by hand (govern does not evaluate it).")
def unknown_elements(model: AuditModel):
    by_file: dict[str, list] = {}
    for u in model.unknown_elements:
        by_file.setdefault(u.file, []).append(u)
    for file, items in sorted(by_file.items()):
        yield Hit("metadata_file", file, f"{file}: {len(items)} element(s) govern does not evaluate: "
                  f"{', '.join(sorted({i.element for i in items}))}",
                  {"elements": [{"element": i.element, "line": i.line} for i in items[:50]]}, _loc(items[0]))


def _loc(item):

    return Location(item.file, item.line)
