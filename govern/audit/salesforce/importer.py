"""`govern import salesforce DIR`: read DX source (`Name.permissionset-meta.xml`) and metadata API
(`permissionsets/Name.permissionset`) files and map them onto the audit model.

Each file is read alone: a malformed file is reported (file and line) and the others still import;
unknown elements are kept as UnknownElement (reported by GOV-META-001), never a crash.
Metadata reference: Salesforce Metadata API Developer Guide (PermissionSet, PermissionSetGroup,
MutingPermissionSet, Profile, ConnectedApp, NamedCredential, ExternalCredential).
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from govern.audit.model import (AuditModel, ConnectedAppM, CredentialM, Location, NamedCredentialM, ObjectPerm,
                                PermissionSetM, PrincipalM, UnknownElement)
from govern.audit.salesforce.xml import MetadataXmlError, Node, parse
from govern.audit.salesforce.certificates import describe_certificate
from govern.audit.secret_scan import is_placeholder, value_kind

# suffix (lower case) -> metadata type
KINDS = {
    "permissionset": "PermissionSet", "permissionsetgroup": "PermissionSetGroup",
    "mutingpermissionset": "MutingPermissionSet", "profile": "Profile", "connectedapp": "ConnectedApp",
    "namedcredential": "NamedCredential", "externalcredential": "ExternalCredential",
}
PS_KNOWN = {"label", "description", "license", "hasActivationRequired", "userPermissions", "objectPermissions",
            "fieldPermissions", "applicationVisibilities", "classAccesses", "customMetadataTypeAccesses",
            "customPermissions", "customSettingAccesses", "externalDataSourceAccesses", "flowAccesses", "pageAccesses",
            "recordTypeVisibilities", "tabSettings", "externalCredentialPrincipalAccesses", "emailRoutingAddressAccesses",
            "servicePresenceStatusAccesses", "agentAccesses", "isOwnedByIntegration"}
PROFILE_KNOWN = PS_KNOWN | {"custom", "userLicense", "loginIpRanges", "loginHours", "layoutAssignments",
                            "tabVisibilities", "profileActionOverrides", "categoryGroupVisibilities", "loginFlows",
                            "fullName"}
GROUP_KNOWN = {"label", "description", "hasActivationRequired", "permissionSets", "mutingPermissionSets", "status"}
APP_KNOWN = {"contactEmail", "contactPhone", "description", "label", "logoUrl", "infoUrl", "iconUrl", "mobileStartUrl",
             "startUrl", "oauthConfig", "oauthPolicy", "permissionSetName", "profileName", "samlConfig", "canvasConfig",
             "plugin", "attributes", "ipRanges", "sessionPolicy", "mobileAppConfig", "pluginExecutionUser",
             "developerName", "fullName", "customAttributes"}
OAUTH_CONFIG_KNOWN = {"callbackUrl", "certificate", "consumerKey", "consumerSecret", "scopes", "isAdminApproved",
                      "isConsumerSecretOptional", "isIntrospectAllTokens", "isSecretRequiredForRefreshToken",
                      "isSecretRequiredForTokenExchange", "isPkceRequired", "isClientCredentialEnabled",
                      "oauthClientCredentialUser", "isTokenExchangeEnabled", "isNamedUserJwtEnabled",
                      "isRefreshTokenRotationEnabled", "assetTokenConfig", "idTokenConfig", "singleLogoutUrl",
                      "isCodeCredentialEnabled", "isCodeCredentialPostOnly", "isDeviceFlowEnabled",
                      "isConsumerSecretRequiredForPkce", "oauthPolicy"}
OAUTH_POLICY_KNOWN = {"ipRelaxation", "refreshTokenPolicy", "singleLogoutUrl", "isTokenExchangeFlowEnabled",
                      "singleLogoutUrlType", "isSingleLogoutEnabled", "refreshTokenValidityPeriod",
                      "refreshTokenValidityMetric"}
NC_KNOWN = {"label", "endpoint", "principalType", "protocol", "username", "password", "allowMergeFieldsInBody",
            "allowMergeFieldsInHeader", "generateAuthorizationHeader", "authProvider", "oauthScope",
            "oauthRefreshToken", "oauthToken", "certificate", "awsAccessKey", "awsAccessSecret", "awsRegion",
            "awsService", "jwtAudience", "jwtFormulaSubject", "jwtIssuer", "jwtSigningCertificate", "jwtTextSubject",
            "jwtValidityPeriodSeconds", "outboundNetworkConnection", "calloutStatus", "namedCredentialType",
            "namedCredentialParameters", "description", "fullName", "authTokenEndpointUrl"}
EC_KNOWN = {"label", "description", "authenticationProtocol", "externalCredentialParameters", "fullName"}
NC_INLINE = ("password", "oauthRefreshToken", "oauthToken", "awsAccessSecret", "awsAccessKey")
APP_INLINE = ("consumerSecret",)


@dataclass
class FileOutcome:
    file: str
    kind: str | None
    status: str  # imported | error | skipped
    message: str = ""
    line: int | None = None
    unknown: int = 0


@dataclass
class ImportResult:
    model: AuditModel
    outcomes: list[FileOutcome] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "imported")

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "error")


def kind_of(path: Path) -> tuple[str | None, str]:
    """(metadata type, component name) from a DX (`X.type-meta.xml`) or mdapi (`X.type`) file name."""
    name = path.name
    stem = name[: -len("-meta.xml")] if name.endswith("-meta.xml") else name
    base, dot, suffix = stem.rpartition(".")
    if not dot:
        return None, name
    return KINDS.get(suffix.lower()), unquote(base)


def skip_reason(path: Path) -> str:
    """Why a file that is not one of KINDS was skipped, in words a reviewer can check."""
    name = path.name
    if name == "package.xml":
        return "package manifest: it lists components and grants nothing"
    if name.startswith("."):
        return "hidden file"
    if name.endswith("-meta.xml"):
        suffix = name[: -len("-meta.xml")].rpartition(".")[2]
        return f"metadata type {suffix!r} is not access-related (govern reads {', '.join(sorted(KINDS))})"
    return f"not access metadata ({path.suffix or 'no extension'}; govern reads {', '.join(sorted(KINDS))})"


def import_directory(root: str | os.PathLike, now: dt.datetime | None = None) -> ImportResult:
    root = Path(root)
    model = AuditModel(source="salesforce", now=now or dt.datetime.now(dt.UTC))
    result = ImportResult(model)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        kind, name = kind_of(path)
        if kind is None:
            result.outcomes.append(FileOutcome(rel, None, "skipped", skip_reason(path)))
            continue
        try:
            node = parse(path.read_bytes())
        except MetadataXmlError as exc:
            result.outcomes.append(FileOutcome(rel, kind, "error", f"{rel}:{exc.line}: {exc}", exc.line))
            continue
        except OSError as exc:
            result.outcomes.append(FileOutcome(rel, kind, "error", f"{rel}: cannot read ({exc.strerror})"))
            continue
        if node.tag != kind:
            result.outcomes.append(FileOutcome(rel, kind, "error", f"{rel}:{node.line}: root element is <{node.tag}>, "
                                                                   f"expected <{kind}>", node.line))
            continue
        before = len(model.unknown_elements)
        MAPPERS[kind](model, node, name, rel)
        result.outcomes.append(FileOutcome(rel, kind, "imported", unknown=len(model.unknown_elements) - before))
    return result


def _unknown(model: AuditModel, node: Node, known: set[str], rel: str, kind: str) -> None:
    for c in node.children:
        if c.tag not in known:
            model.unknown_elements.append(UnknownElement(rel, c.line, c.tag, kind))


def _unique(existing: dict, name: str, rel: str) -> str:
    return name if name not in existing else f"{name} ({rel})"


def _permission_set(model: AuditModel, node: Node, name: str, rel: str, kind: str, known: set[str]) -> PermissionSetM:
    ps = PermissionSetM(id=_unique(model.permission_sets, name, rel), kind=kind, label=node.child_text("label") or name,
                        description=node.child_text("description") or "", location=Location(rel, node.line))
    for up in node.all("userPermissions"):
        perm = up.child_text("name")
        if perm and up.flag("enabled"):
            ps.system_permissions.append(perm)
            # the <name> line, which says which permission, rather than the <userPermissions> block
            ps.system_permission_lines[perm] = Location(rel, (up.find("name") or up).line)
    for op in node.all("objectPermissions"):
        obj = op.child_text("object")
        if obj:
            # point at the broadest flag that is set (what a reviewer objects to), else at the block
            broad = next((op.find(t) for t in ("modifyAllRecords", "viewAllRecords") if op.flag(t)), None)
            ps.objects[obj] = ObjectPerm(read=op.flag("allowRead"), create=op.flag("allowCreate"),
                                         edit=op.flag("allowEdit"), delete=op.flag("allowDelete"),
                                         view_all=op.flag("viewAllRecords"), modify_all=op.flag("modifyAllRecords"),
                                         location=Location(rel, (broad or op).line))
    for fp in node.all("fieldPermissions"):
        obj, _, fname = (fp.child_text("field") or "").partition(".")
        if obj and fname and (fp.flag("readable") or fp.flag("editable")):
            fields = ps.objects.setdefault(obj, ObjectPerm(location=Location(rel, fp.line))).fields
            fields[fname] = "edit" if fp.flag("editable") else "read"
    for access in node.all("externalCredentialPrincipalAccesses"):
        principal = access.child_text("externalCredentialPrincipal")
        if principal and access.flag("enabled"):
            ps.principal_access.append(principal)
    for ip in node.all("loginIpRanges"):
        ps.login_ip_ranges.append((ip.child_text("startAddress") or "", ip.child_text("endAddress") or ""))
    _unknown(model, node, known, rel, kind)
    model.permission_sets[ps.id] = ps
    return ps


def map_permission_set(model, node, name, rel):
    _permission_set(model, node, name, rel, "permission_set", PS_KNOWN)


def map_muting(model, node, name, rel):
    _permission_set(model, node, name, rel, "muting_permission_set", PS_KNOWN)


def map_profile(model, node, name, rel):
    _permission_set(model, node, name, rel, "profile", PROFILE_KNOWN)


def map_group(model, node, name, rel):
    ps = PermissionSetM(id=_unique(model.permission_sets, name, rel), kind="permission_set_group",
                        label=node.child_text("label") or name, description=node.child_text("description") or "",
                        members=[n.text for n in node.all("permissionSets")],
                        muting=[n.text for n in node.all("mutingPermissionSets")], location=Location(rel, node.line))
    _unknown(model, node, GROUP_KNOWN, rel, "PermissionSetGroup")
    model.permission_sets[ps.id] = ps


def map_connected_app(model, node, name, rel):
    app = ConnectedAppM(id=_unique(model.connected_apps, name, rel), label=node.child_text("label") or name,
                        contact=node.child_text("contactEmail"), description=node.child_text("description") or "",
                        permission_sets=[n.text for n in node.all("permissionSetName") + node.all("profileName")
                                         if n.text],
                        ip_ranges=[(r.child_text("start") or "", r.child_text("end") or "") for r in node.all("ipRanges")],
                        location=Location(rel, node.line))
    cfg = node.find("oauthConfig")
    if cfg is not None:
        scopes = cfg.all("scopes")
        app.scopes = [s.text for s in scopes]
        if scopes:
            app.element_lines["scopes"] = Location(rel, scopes[0].line)
            for el in scopes:  # each scope's own line, for findings about one scope (`Full`, a wildcard)
                app.element_lines.setdefault(f"scopes:{el.text}", Location(rel, el.line))
        for cb in cfg.all("callbackUrl"):
            # one element may hold several URLs separated by newlines or commas
            app.callback_urls += [u.strip() for u in cb.text.replace(",", "\n").splitlines() if u.strip()]
            app.element_lines.setdefault("callbackUrl", Location(rel, cb.line))
        cert = cfg.find("certificate")
        if cert is not None and cert.text and not is_placeholder(cert.text):
            app.has_certificate = True
            app.certificate = describe_certificate(cert.text)
            app.element_lines["certificate"] = Location(rel, cert.line)
        for tag in APP_INLINE:
            el = cfg.find(tag)
            if el is not None and el.text and not is_placeholder(el.text):
                app.inline_secrets.append((tag, Location(rel, el.line)))
        _unknown(model, cfg, OAUTH_CONFIG_KNOWN, rel, "ConnectedApp.oauthConfig")
    policy = node.find("oauthPolicy") or (cfg.find("oauthPolicy") if cfg is not None else None)
    if policy is not None:
        app.ip_relaxation = policy.child_text("ipRelaxation")
        app.refresh_token_policy = policy.child_text("refreshTokenPolicy")
        for tag in ("ipRelaxation", "refreshTokenPolicy"):
            el = policy.find(tag)
            if el is not None:
                app.element_lines[tag] = Location(rel, el.line)
        _unknown(model, policy, OAUTH_POLICY_KNOWN, rel, "ConnectedApp.oauthPolicy")
    _unknown(model, node, APP_KNOWN, rel, "ConnectedApp")
    model.connected_apps[app.id] = app


def map_named_credential(model, node, name, rel):
    params = node.all("namedCredentialParameters")
    nc = NamedCredentialM(id=_unique(model.named_credentials, name, rel), location=Location(rel, node.line))
    if params or node.child_text("namedCredentialType"):
        for p in params:
            ptype, pvalue = p.child_text("parameterType") or "", p.child_text("parameterValue") or ""
            if ptype == "Url":
                nc.url = pvalue
            elif ptype == "Authentication" and p.child_text("externalCredential"):
                nc.credential = p.child_text("externalCredential")
            elif pvalue:
                nc.config[f"{ptype}:{p.child_text('parameterName') or ''}"] = pvalue
            if pvalue and value_kind(pvalue):
                nc.inline_secrets.append((f"namedCredentialParameters[{p.child_text('parameterName')}]",
                                          Location(rel, p.line)))
    else:
        nc.legacy = True
        for tag in ("endpoint", "protocol", "principalType"):
            el = node.find(tag)
            if el is not None:
                nc.element_lines[tag] = Location(rel, el.line)
        nc.url = node.child_text("endpoint") or ""
        nc.protocol = node.child_text("protocol") or "NoAuthentication"
        nc.principal_type = node.child_text("principalType")
        for tag in NC_INLINE:
            el = node.find(tag)
            if el is not None and el.text and not is_placeholder(el.text):
                nc.inline_secrets.append((tag, Location(rel, el.line)))
        if nc.url and value_kind(nc.url):
            nc.inline_secrets.append(("endpoint", Location(rel, node.find("endpoint").line)))
        scope = node.child_text("oauthScope")
        if scope:
            # a legacy credential is its own credential: scopes and protocol audit like an external one
            model.credentials[nc.id] = CredentialM(id=nc.id, protocol=nc.protocol, scopes=scope.split(),
                                                   location=nc.location)
    _unknown(model, node, NC_KNOWN, rel, "NamedCredential")
    model.named_credentials[nc.id] = nc


def map_external_credential(model, node, name, rel):
    cred = CredentialM(id=_unique(model.credentials, name, rel), protocol=node.child_text("authenticationProtocol") or "",
                       location=Location(rel, node.line))
    for p in node.all("externalCredentialParameters"):
        ptype, pname = p.child_text("parameterType") or "", p.child_text("parameterName") or ""
        value = p.child_text("parameterValue") or ""
        if ptype == "NamedPrincipal":
            cred.principals.append(PrincipalM(pname, "named", location=Location(rel, p.line)))
        elif ptype == "PerUserPrincipal":
            cred.principals.append(PrincipalM(pname, "per_user", location=Location(rel, p.line)))
        elif ptype == "AuthProvider":
            cred.config["AuthProvider"] = p.child_text("authProvider") or pname
        elif pname.lower() == "scope" and value:
            cred.scopes = value.split()
        elif value:
            cred.config[f"{ptype}:{pname}"] = value
    cred.principal_type = "per_user" if any(p.kind == "per_user" for p in cred.principals) else "named"
    _unknown(model, node, EC_KNOWN, rel, "ExternalCredential")
    model.credentials[cred.id] = cred


MAPPERS = {
    "PermissionSet": map_permission_set, "MutingPermissionSet": map_muting, "Profile": map_profile,
    "PermissionSetGroup": map_group, "ConnectedApp": map_connected_app, "NamedCredential": map_named_credential,
    "ExternalCredential": map_external_credential,
}
