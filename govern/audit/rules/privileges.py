"""Salesforce user permissions an integration identity never needs, by what they give away (seed §7, "Apply the
Principle of Least Privilege"): bulk data export, the org's event logs, identity-security administration, linking
the org to others, and mass email. Each fires on a permission set, profile or permission set group whose
effective permissions (a group's members minus its muting sets) include one of them."""
from __future__ import annotations

from collections.abc import Iterator

from govern.audit.registry import Hit, rule
from govern.audit.model import AuditModel, Location, PermissionSetM

S7_MIN = '§7 Apply the Principle of Least Privilege: "Every integration should have the minimum permissions needed"'
S7_ADMIN = '§7 Apply the Principle of Least Privilege: "Create dedicated integration users (not admin accounts)"'
S12_LOGS = '§12 Log Everything, but Smartly: "Do NOT log sensitive data (passwords, tokens, PII)": event logs hold ' \
           'exactly that, so reading them is for monitoring staff, not an integration (§7 "minimum permissions")'

DATA_EXPORT = frozenset({"DataExport"})
EVENT_LOGS = frozenset({"ViewEventLogFiles", "ViewAllData"})
IDENTITY_SECURITY = frozenset({"ManagePasswordPolicies", "ManageTwoFactor", "FreezeUsers", "ManageEncryptionKeys",
                               "ManageLoginAccessPolicies"})
ORG_LINKAGE = frozenset({"ConnectOrgToEnvironmentHub"})
MASS_EMAIL = frozenset({"EmailMass"})


def holders(model: AuditModel, perms: frozenset[str]) -> Iterator[tuple[PermissionSetM, set[str]]]:
    """Each permission set, profile or group that effectively grants any of `perms`; muting sets grant nothing."""
    for ps in model.permission_sets.values():
        if ps.kind == "muting_permission_set":
            continue
        found = model.effective_permissions(ps) & perms
        if found:
            yield ps, found


def line_of(ps: PermissionSetM, perms: set[str]) -> Location | None:
    """The <name> line of the first permission found (a group points at itself: its members hold the lines)."""
    for p in sorted(perms):
        if p in ps.system_permission_lines:
            return ps.system_permission_lines[p]
    return ps.location


def _hits(model: AuditModel, perms: frozenset[str], what: str) -> Iterator[Hit]:
    for ps, found in holders(model, perms):
        yield Hit("permission_set", ps.id, f"{ps.kind} {ps.id} grants {', '.join(sorted(found))} ({what})",
                  {"permission_set": ps.id, "kind": ps.kind, "permissions": sorted(found),
                   "assigned_to": model.users_of(ps.id)}, line_of(ps, found))


@rule("GOV-DATA-001", "Data export permission on an integration identity", "high", rationale=S7_MIN,
      remediation="Remove the DataExport user permission (Weekly Export Service) from the permission set or profile. "
      "An integration reads the records it needs through the API, within its object and field permissions; a "
      "full export of the org is an administrator's task.")
def data_export(model: AuditModel):
    yield from _hits(model, DATA_EXPORT, "exports every record of the org")


@rule("GOV-LOG-001", "Event log access on an integration identity", "high", rationale=S12_LOGS,
      remediation="Remove ViewEventLogFiles (and ViewAllData, which event monitoring also accepts) from the permission "
      "set or profile. Give event monitoring to a dedicated monitoring identity whose only grant is the event log "
      "files, reviewed by security.")
def event_logs(model: AuditModel):
    yield from _hits(model, EVENT_LOGS, "reads the org's event monitoring logs")


@rule("GOV-IDSEC-001", "Identity-security administration on an integration identity", "critical",
      rationale=S7_ADMIN,
      remediation="Remove ManagePasswordPolicies, ManageTwoFactor, FreezeUsers, ManageEncryptionKeys and "
      "ManageLoginAccessPolicies from the permission set or profile. These change how every user signs in and how "
      "data is encrypted; keep them with named security administrators, never an integration.")
def identity_security(model: AuditModel):
    yield from _hits(model, IDENTITY_SECURITY, "administers sign-in, MFA, user freezing or encryption keys")


@rule("GOV-ORG-001", "Org linkage permission on an integration identity", "high", rationale=S7_ADMIN,
      remediation="Remove ConnectOrgToEnvironmentHub from the permission set or profile. Linking this org to an "
      "Environment Hub lets another org's administrators sign in to it; it is a one-time administrator action.")
def org_linkage(model: AuditModel):
    yield from _hits(model, ORG_LINKAGE, "links the org to an Environment Hub")


@rule("GOV-EMAIL-001", "Mass email permission on an integration identity", "medium", rationale=S7_MIN,
      remediation="Remove EmailMass from the permission set or profile. An integration that must send email uses a "
      "dedicated email service with its own limits and audit, not the org's mass email.")
def mass_email(model: AuditModel):
    yield from _hits(model, MASS_EMAIL, "sends mass email from the org")
