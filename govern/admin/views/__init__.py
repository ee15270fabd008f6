"""The console's views, in menu order. Each is readable by every role; writes are explicit, role-checked actions."""
from __future__ import annotations

from govern.admin.views.activity import AdminActionView, DecisionView
from govern.admin.views.audit import AuditRunsView
from govern.admin.views.findings import FindingView, SuppressionView
from govern.admin.views.identities import (AssignmentView, GrantView, IntegrationUserView, PermissionSetView,
                                           RotationScheduleView, SecretRefView)
from govern.admin.views.landscape import CredentialView, NamedCredentialView, PrincipalView, SystemView
from govern.admin.views.policies import PoliciesView
from govern.admin.views.rotations import RotationRunView
from govern.admin.views.search import SearchView
from govern.store import tables as t


def build_views(db, services) -> list:
    # Endpoints carry a console_ prefix: flask-admin makes each view a blueprint, and the API's blueprints
    # ("secrets", "rotations", "findings", ...) own the bare names.
    def view(cls, model, name, endpoint, category=None):
        return cls(model, db, services, name=name, endpoint=f"console_{endpoint}", url=f"/admin/{endpoint}",
                   category=category)

    return [
        view(SystemView, t.System, "Systems", "systems", "Landscape"),
        view(CredentialView, t.ExternalCredential, "Credentials", "credentials", "Landscape"),
        view(PrincipalView, t.Principal, "Principals", "principals", "Landscape"),
        view(NamedCredentialView, t.NamedCredential, "Named credentials", "named_credentials", "Landscape"),
        view(IntegrationUserView, t.IntegrationUser, "Integration users", "integration_users", "Access"),
        view(PermissionSetView, t.PermissionSet, "Permission sets", "permission_sets", "Access"),
        view(GrantView, t.PermissionGrant, "Grants", "grants", "Access"),
        view(AssignmentView, t.Assignment, "Assignments", "assignments", "Access"),
        PoliciesView(services, db, name="Policies", endpoint="console_policies", url="/admin/policies",
                     category="Access"),
        view(SecretRefView, t.SecretRef, "Secrets", "secrets", "Secrets"),
        view(RotationScheduleView, t.SecretRef, "Rotation schedule", "rotation_schedule", "Secrets"),
        view(RotationRunView, t.RotationRun, "Rotation history", "rotations", "Secrets"),
        view(DecisionView, t.Decision, "Decisions", "decisions", "Audit"),
        AuditRunsView(db, services, name="Audit runs", endpoint="console_audit_runs", url="/admin/audit_runs",
                      category="Audit"),
        view(FindingView, t.Finding, "Findings", "findings", "Audit"),
        view(SuppressionView, t.Suppression, "Suppressions", "suppressions", "Audit"),
        view(AdminActionView, t.AdminAction, "Admin actions", "admin_actions", "Audit"),
        SearchView(db, name="Search", endpoint="console_search", url="/admin/search"),
    ]
