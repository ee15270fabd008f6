"""Dangerous access (seed section 7, "Apply the Principle of Least Privilege")."""
from __future__ import annotations

from govern.audit.registry import Hit, rule
from govern.audit.model import AuditModel, PermissionSetM

S7_ADMIN = '§7 Apply the Principle of Least Privilege: "Create dedicated integration users (not admin accounts)"'
S7_SETS = '§7: "Use Permission Sets specifically for integration needs"'
S7_SCOPE = '§7: "Scope OAuth tokens to required object/field access"'

# Salesforce user permissions that make a user an administrator in all but name.
ADMIN_EQUIVALENT = frozenset({
    "ModifyAllData", "ViewAllData", "ManageUsers", "AuthorApex", "CustomizeApplication", "ModifyMetadata",
    "AssignPermissionSets", "ManageProfilesPermissionsets", "ManageInternalUsers", "ManageRoles", "ManageSharing",
    "ResetPasswords", "ManageIpAddresses", "ManageAuthProviders", "ManageRemoteAccess",
    "ManageCertificates", "ManageSessionPermissionSets",
})  # ManageEncryptionKeys and ManageLoginAccessPolicies: GOV-IDSEC-001 (govern.audit.rules.privileges)
# Dangerous, though not admin-equivalent, for a non-human integration identity.
DANGEROUS = frozenset({
    "ViewSetup", "ViewAllUsers", "ViewAllProfiles", "ExportReport", "ManageDataIntegrations", "BulkApiHardDelete",
    "TransferAnyEntity", "EditReadonlyFields", "ViewEncryptedData", "ManageCustomPermissions", "ManageSandboxes",
    "PasswordNeverExpires", "InstallPackaging", "ManageExternalConnections", "ViewDeveloperName",
})
# Pairs that together allow escalation or exfiltration (each alone may be reviewed and accepted).
TOXIC = (
    (frozenset({"ManageUsers", "AssignPermissionSets"}), "can create users and grant them any permission set"),
    (frozenset({"ManageProfilesPermissionsets", "AssignPermissionSets"}), "can define any permission and grant it"),
    (frozenset({"AuthorApex", "CustomizeApplication"}), "can deploy code that runs in system mode"),
    (frozenset({"ViewAllData", "ExportReport"}), "can read every record and export it in bulk"),
    (frozenset({"ApiEnabled", "ModifyAllData"}), "can rewrite every record through the API"),
    (frozenset({"BulkApiHardDelete", "ModifyAllData"}), "can irreversibly delete every record in bulk"),
)


def _ps_evidence(model: AuditModel, ps: PermissionSetM, perms) -> dict:
    return {"permission_set": ps.id, "kind": ps.kind, "permissions": sorted(perms), "assigned_to": model.users_of(ps.id)}


def _first_line(ps: PermissionSetM, perms):
    for p in sorted(perms):
        if p in ps.system_permission_lines:
            return ps.system_permission_lines[p]
    return ps.location


@rule("GOV-ACCESS-001", "Admin-equivalent permission on an integration identity", "critical",
      rationale=S7_ADMIN, remediation="Remove the admin-equivalent permissions (ModifyAllData, ViewAllData, AuthorApex, "
      "CustomizeApplication, ModifyMetadata, ManageUsers, AssignPermissionSets, ...) and grant object and field "
      "permissions for exactly the records the integration touches.")
def admin_equivalent(model: AuditModel):
    for ps in model.permission_sets.values():
        if ps.kind == "muting_permission_set":
            continue
        found = model.effective_permissions(ps) & ADMIN_EQUIVALENT
        if found:
            yield Hit("permission_set", ps.id, f"{ps.kind} {ps.id} grants admin-equivalent {', '.join(sorted(found))}",
                      _ps_evidence(model, ps, found), _first_line(ps, found))


@rule("GOV-ACCESS-002", "Dangerous permission on an integration identity", "high", rationale=S7_ADMIN,
      remediation="Remove setup, export and bulk-delete style permissions; an integration needs API access to its "
      "own objects only.")
def dangerous(model: AuditModel):
    for ps in model.permission_sets.values():
        if ps.kind == "muting_permission_set":
            continue
        found = model.effective_permissions(ps) & DANGEROUS
        if found:
            yield Hit("permission_set", ps.id, f"{ps.kind} {ps.id} grants {', '.join(sorted(found))}",
                      _ps_evidence(model, ps, found), _first_line(ps, found))


@rule("GOV-ACCESS-003", "Toxic combination of permissions", "critical", rationale=S7_ADMIN,
      remediation="Split the permissions across separate, reviewed permission sets, or remove one side of each pair.")
def toxic(model: AuditModel):
    for ps in model.permission_sets.values():
        if ps.kind == "muting_permission_set":
            continue
        perms = model.effective_permissions(ps)
        combos = [(sorted(pair), why) for pair, why in TOXIC if pair <= perms]
        # a user's assignments combine too: check the union across every set a user holds
        if combos:
            yield Hit("permission_set", ps.id, f"{ps.id}: " + "; ".join(f"{'+'.join(p)} {w}" for p, w in combos),
                      {"combinations": [p for p, _ in combos], **_ps_evidence(model, ps, {x for p, _ in combos for x in p})},
                      # the dangerous half of the first pair (ApiEnabled is only the way in)
                      _first_line(ps, set(combos[0][0]) - {"ApiEnabled"} or set(combos[0][0])))
    for user in model.users.values():
        union: set[str] = set()
        for ps in model.user_permission_sets(user):
            union |= model.effective_permissions(ps)
        pairs = [sorted(pair) for pair, _ in TOXIC if pair <= union]
        single = any(pair <= model.effective_permissions(ps) for pair, _ in TOXIC for ps in model.user_permission_sets(user))
        if pairs and not single:
            yield Hit("integration_user", user.id, f"{user.id} combines {pairs} across its permission sets",
                      {"combinations": pairs, "permission_sets": [a.permission_set for a in user.assignments]})


# Standard objects that hold personal, financial or account data (Salesforce object reference); View All or
# Modify All on one of them exposes every customer's records, whatever the sharing model says.
SENSITIVE_OBJECTS = frozenset({
    "Account", "Contact", "Lead", "Opportunity", "Case", "User", "Contract", "Order", "Quote", "Individual", "Asset",
    "Invoice", "Payment", "PaymentMethod", "CardPaymentMethod", "DigitalWallet", "ContactPointEmail",
    "ContactPointPhone", "ContactPointAddress", "Task", "Event", "EmailMessage", "ContentVersion", "ContentDocument",
    "Document", "Attachment", "Note", "Entitlement", "ServiceContract", "PersonAccount", "Consent",
})


def broad_access_severity(broad: dict[str, list[str]]) -> str:
    """View All / Modify All grows with the number and the sensitivity of the objects: one custom object read in
    full is low, sensitive objects or many objects are high, Modify All on several sensitive ones is critical."""
    sensitive = [o for o in broad if o in SENSITIVE_OBJECTS]
    modify = [o for o, kinds in broad.items() if "modify_all" in kinds]
    if len(broad) >= 10 or (len([o for o in modify if o in SENSITIVE_OBJECTS]) >= 3):
        return "critical"
    if sensitive or len(broad) >= 5:
        return "high"
    if len(broad) >= 2 or modify:
        return "medium"
    return "low"


@rule("GOV-ACCESS-004", "Object-level View All or Modify All", "high", rationale=S7_SCOPE,
      remediation="Clear viewAllRecords/modifyAllRecords; rely on sharing and grant read/edit on the objects needed. "
      "The finding's severity grows with the objects covered: low for one non-sensitive object read in full, high "
      "for sensitive objects (Account, Contact, Case...) or five objects and more, critical for ten objects or Modify "
      "All on three sensitive ones.")
def view_all_modify_all(model: AuditModel):
    for ps in model.permission_sets.values():
        objects = dict(ps.objects)
        for g in ps.grants:
            objects.update(g.objects)
        broad = {name: [k for k in ("view_all", "modify_all") if getattr(perm, k)] for name, perm in objects.items()
                 if perm.view_all or perm.modify_all}
        if broad:
            severity = broad_access_severity(broad)
            sensitive = sorted(o for o in broad if o in SENSITIVE_OBJECTS)
            first = (sensitive or sorted(broad))[0]
            yield Hit("permission_set", ps.id, f"{ps.id} has View All/Modify All on {len(broad)} object(s): "
                      f"{', '.join(sorted(broad))}", {"objects": broad, "sensitive_objects": sensitive,
                                                      "assigned_to": model.users_of(ps.id)},
                      objects[first].location or ps.location, severity=severity)


@rule("GOV-ACCESS-005", "Grant without method or path restriction", "medium", rationale=S7_SCOPE,
      remediation="List the methods and the narrowest path patterns the integration calls; avoid '/**' and empty lists.")
def unrestricted_grant(model: AuditModel):
    for ps in model.permission_sets.values():
        for i, g in enumerate(ps.grants):
            if g.named_credential is None:
                continue
            wide_paths = not g.paths or any(p.strip("/") in ("**", "*") for p in g.paths)
            wide_methods = not g.methods or "*" in g.methods
            if wide_paths or wide_methods:
                yield Hit("grant", f"{ps.id}#{i}", f"{ps.id} grants {g.named_credential} with "
                          f"{'all paths' if wide_paths else 'all methods'}",
                          {"permission_set": ps.id, "named_credential": g.named_credential, "methods": g.methods,
                           "paths": g.paths}, ps.location)


@rule("GOV-ACCESS-006", "Integration user named or labelled as an administrator", "medium", rationale=S7_ADMIN,
      remediation="Give the integration a dedicated, non-admin identity named after its business purpose.")
def admin_named(model: AuditModel):
    words = ("admin", "sysadmin", "root", "superuser")
    for user in model.users.values():
        text = f"{user.id} {user.name}".lower()
        if any(w in text for w in words):
            yield Hit("integration_user", user.id, f"integration user {user.id} is named like an administrator",
                      {"id": user.id, "name": user.name})
