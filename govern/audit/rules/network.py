"""Network and OAuth settings (seed section 7: "Restrict IP ranges for Connected Apps", "Scope OAuth tokens")."""
from __future__ import annotations

import ipaddress

from govern.audit.registry import Hit, rule
from govern.audit.model import AuditModel
from govern.audit.secret_scan import safe_url
from govern.domain.access_rules import broad_ranges as ranges_broader_than

S7_IP = '§7 Apply the Principle of Least Privilege: "Restrict IP ranges for Connected Apps"'
S7_SCOPE = '§7: "Scope OAuth tokens to required object/field access"'
REFRESH_SCOPES = {"refresh_token", "offline_access", "refreshtoken"}


def _norm(scope: str) -> str:
    return scope.strip().lower().replace(" ", "")


def _scope_line(model: AuditModel, kind: str, subject: str, scope: str, default):
    """The line of one scope element of a connected app (metadata); the holder's location otherwise."""
    if kind == "connected_app":
        return model.connected_apps[subject].element_lines.get(f"scopes:{scope}", default)
    return default


def _scope_holders(model: AuditModel):
    """(subject_kind, subject, scopes, location) for everything that carries OAuth scopes."""
    for u in model.users.values():
        yield "integration_user", u.id, u.allowed_scopes, None
    for ps in model.permission_sets.values():
        yield "permission_set", ps.id, ps.scopes, ps.location
    for c in model.credentials.values():
        yield "credential", c.id, c.scopes, c.location
    for app in model.connected_apps.values():
        yield "connected_app", app.id, app.scopes, app.element_lines.get("scopes", app.location)


def _malformed(cidr: str) -> bool:
    try:
        ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        return True
    return False


def _ipv4_range_size(start: str, end: str) -> int:
    try:
        return int(ipaddress.ip_address(end)) - int(ipaddress.ip_address(start)) + 1
    except ValueError:
        return 0


@rule("GOV-NET-001", "No IP restriction", "high", rationale=S7_IP,
      remediation="Restrict the integration user (ip_ranges) or the profile (loginIpRanges) to the integration's egress "
      "addresses.")
def no_ip_restriction(model: AuditModel):
    for u in model.users.values():
        if u.status == "active" and not u.allowed_cidrs:
            yield Hit("integration_user", u.id, f"{u.id} may authenticate from any address", {"ip_ranges": []})
    for ps in model.permission_sets.values():
        if ps.kind == "profile" and "ApiEnabled" in ps.system_permissions and not ps.login_ip_ranges:
            yield Hit("profile", ps.id, f"profile {ps.id} enables the API with no loginIpRanges",
                      {"loginIpRanges": []}, ps.location)


@rule("GOV-NET-002", "IP range too broad", "high", rationale=S7_IP,
      remediation="Narrow the range to the integration's egress addresses (IPv4 /16 or narrower, IPv6 /48 or narrower). "
      "A range broader than the IP guardrail's minimum (GOVERN_MIN_IPV4_PREFIX, default /8; GOVERN_MIN_IPV6_PREFIX, "
      "default /32) already has every request of the user refused (forbid:require-ip-restrictions).")
def broad_ranges(model: AuditModel):
    pol = model.policy
    # The advice is never looser than the guardrail: whatever the guardrail refuses is a finding too.
    advice = (max(pol.min_ipv4_prefix, pol.guardrail_min_ipv4_prefix),
              max(pol.min_ipv6_prefix, pol.guardrail_min_ipv6_prefix))
    for u in model.users.values():
        broad = [c for c in u.allowed_cidrs if _malformed(c)] + ranges_broader_than(u.allowed_cidrs, *advice)
        if broad:
            refused = ranges_broader_than(u.allowed_cidrs, pol.guardrail_min_ipv4_prefix, pol.guardrail_min_ipv6_prefix)
            evidence = {"ranges": broad}
            if refused:
                evidence["refused_by_guardrail"] = refused
            yield Hit("integration_user", u.id, f"{u.id} allows {', '.join(broad)}"
                      + (" (the IP guardrail refuses its requests)" if refused else ""), evidence)
    for ps in model.permission_sets.values():
        broad = [f"{s}-{e}" for s, e in ps.login_ip_ranges if _ipv4_range_size(s, e) > 2 ** (32 - pol.min_ipv4_prefix)]
        if broad:
            yield Hit("profile", ps.id, f"profile {ps.id} allows logins from {', '.join(broad)}", {"ranges": broad},
                      ps.location)


@rule("GOV-NET-003", "Relaxed IP policy on a connected app", "high", rationale=S7_IP,
      remediation="Set oauthPolicy/ipRelaxation to ENFORCE so the profile's IP ranges apply to every token.")
def relaxed_ip(model: AuditModel):
    for app in model.connected_apps.values():
        if app.ip_relaxation and app.ip_relaxation.upper() in ("BYPASS", "ENFORCE_ACTIVATED_DEVICES"):
            yield Hit("connected_app", app.id, f"connected app {app.id} relaxes IP restrictions ({app.ip_relaxation})",
                      {"ipRelaxation": app.ip_relaxation}, app.element_lines.get("ipRelaxation", app.location))


@rule("GOV-NET-004", "Endpoint without TLS", "high", rationale='§6 Use Named Credentials: "Store all external '
      'endpoints in Named Credentials" — and credentials and data must not cross the network in clear text',
      remediation="Use an https:// endpoint; plain HTTP exposes the injected credentials and the data to the network.")
def plain_http_endpoint(model: AuditModel):
    for nc in model.named_credentials.values():
        url = nc.url.strip().lower()
        if url.startswith("http://") and not url.startswith(("http://localhost", "http://127.0.0.1", "http://[::1]")):
            yield Hit("named_credential", f"{nc.id}#tls", f"{nc.id} calls {safe_url(nc.url)} over plain HTTP",
                      {"url": safe_url(nc.url)}, nc.element_lines.get("endpoint", nc.location))


@rule("GOV-OAUTH-001", "`full` OAuth scope", "critical", rationale=S7_SCOPE,
      remediation="Replace `full` with the narrowest scopes the integration needs (for Salesforce usually `api`).")
def full_scope(model: AuditModel):
    for kind, subject, scopes, loc in _scope_holders(model):
        full = [s for s in scopes if _norm(s) == "full"]
        if full:
            yield Hit(kind, subject, f"{kind} {subject} holds the `full` scope", {"scopes": list(scopes)},
                      _scope_line(model, kind, subject, full[0], loc))


@rule("GOV-OAUTH-002", "Wildcard OAuth scope", "high", rationale=S7_SCOPE,
      remediation="List each scope explicitly; wildcards grant every present and future scope.")
def wildcard_scope(model: AuditModel):
    for kind, subject, scopes, loc in _scope_holders(model):
        wild = [s for s in scopes if "*" in s]
        if wild:
            yield Hit(kind, subject, f"{kind} {subject} holds wildcard scopes {wild}", {"scopes": wild},
                      _scope_line(model, kind, subject, wild[0], loc))


@rule("GOV-OAUTH-003", "`refresh_token` scope that is not needed", "medium", rationale=S7_SCOPE,
      remediation="Drop refresh_token/offline_access: server-to-server flows (client credentials, JWT bearer) get a new "
      "access token without one.")
def unneeded_refresh(model: AuditModel):
    for u in model.users.values():
        # govern's own token endpoint issues client_credentials tokens only: a refresh token is never needed
        extra = [s for s in u.allowed_scopes if _norm(s) in REFRESH_SCOPES]
        if extra:
            yield Hit("integration_user", u.id, f"{u.id} may ask for {extra}", {"scopes": extra})
    for c in model.credentials.values():
        extra = [s for s in c.scopes if _norm(s) in REFRESH_SCOPES]
        if extra and c.protocol not in ("oauth2_refresh_token", "Oauth", "OAuth"):
            yield Hit("credential", c.id, f"{c.id} ({c.protocol}) requests {extra}", {"protocol": c.protocol,
                      "scopes": extra}, c.location)
    for app in model.connected_apps.values():
        extra = [s for s in app.scopes if _norm(s) in REFRESH_SCOPES]
        # a certificate means the JWT bearer flow is available; no callback means no user-agent flow needs offline access
        if extra and (app.has_certificate or not app.callback_urls):
            yield Hit("connected_app", app.id, f"connected app {app.id} grants {extra} though "
                      f"{'a certificate (JWT bearer) is configured' if app.has_certificate else 'it has no callback URL'}",
                      {"scopes": app.scopes, "certificate": app.has_certificate,
                       "callback_urls": [safe_url(u) for u in app.callback_urls]},
                      _scope_line(model, "connected_app", app.id, extra[0], app.element_lines.get("scopes", app.location)))


@rule("GOV-OAUTH-004", "Refresh tokens valid until revoked", "high", rationale=S7_SCOPE,
      remediation="Set the refresh token policy to expire (e.g. after 90 days, or immediately for JWT bearer).")
def infinite_refresh(model: AuditModel):
    for app in model.connected_apps.values():
        has_refresh = any(_norm(s) in REFRESH_SCOPES or _norm(s) == "full" for s in app.scopes)
        policy = (app.refresh_token_policy or "").lower()
        # Salesforce's default refreshTokenPolicy is "valid until revoked" (infinite)
        if policy == "infinite" or (has_refresh and not policy):
            yield Hit("connected_app", app.id, f"connected app {app.id} issues refresh tokens valid until revoked",
                      {"refreshTokenPolicy": app.refresh_token_policy or "(default: infinite)"},
                      app.element_lines.get("refreshTokenPolicy", app.location))
    for c in model.credentials.values():
        if c.protocol == "oauth2_refresh_token" and (c.refresh_token_policy or "infinite").lower() == "infinite":
            yield Hit("credential", c.id, f"{c.id} holds a refresh token valid until revoked",
                      {"refresh_token_policy": c.refresh_token_policy}, c.location)


@rule("GOV-OAUTH-005", "Token lifetime longer than policy", "low", rationale=S7_SCOPE,
      remediation="Lower max_token_lifetime (15 minutes is enough for server-to-server calls).")
def long_tokens(model: AuditModel):
    limit = model.policy.max_token_lifetime_seconds
    for ps in model.permission_sets.values():
        if ps.max_token_lifetime_seconds and ps.max_token_lifetime_seconds > limit:
            yield Hit("permission_set", ps.id, f"{ps.id} allows tokens for {ps.max_token_lifetime_seconds}s",
                      {"max_token_lifetime_seconds": ps.max_token_lifetime_seconds, "policy_seconds": limit})


@rule("GOV-OAUTH-006", "OAuth callback URL without TLS", "medium", rationale=S7_SCOPE,
      remediation="Use https callback URLs (http only for localhost development apps).")
def plain_http_callback(model: AuditModel):
    for app in model.connected_apps.values():
        bad = [u for u in app.callback_urls if u.lower().startswith("http://")
               and not u.lower().startswith(("http://localhost", "http://127.0.0.1"))]
        if bad:
            yield Hit("connected_app", app.id, f"connected app {app.id} sends codes over plain HTTP",
                      {"callback_urls": [safe_url(u) for u in bad]}, app.element_lines.get("callbackUrl", app.location))
