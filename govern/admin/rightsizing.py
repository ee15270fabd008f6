"""One integration user's "granted vs used": the audit's right-sizing (govern.audit.rightsizing) computed for
the user's page from the same model `govern audit` loads, and the words the page shows for it."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from govern.audit.model import AuditModel, AuditPolicy
from govern.audit.rightsizing import Recommendation, UnusedItem, governance_yaml, recommend
from govern.store.audit_loader import load_model

WINDOW_DAYS = 30


@dataclass
class UserRightsizing:
    model: AuditModel
    recommendation: Recommendation | None

    @property
    def applicable(self) -> bool:
        """A recommendation govern may apply: judged, replay-proven (no allowed request would be denied),
        and narrower than what the user holds."""
        rec = self.recommendation
        return bool(rec and rec.judged and rec.unused and rec.proof.get("would_deny") == 0 and rec.permission_sets)

    def document(self) -> dict:
        """The recommendation as a governance.yaml document for `govern apply` (empty when not applicable)."""
        if not self.applicable or self.recommendation is None:
            return {}
        return governance_yaml(self.model, [self.recommendation])


def policy(settings, window_days: int = WINDOW_DAYS) -> AuditPolicy:
    return AuditPolicy(window_days=window_days, guardrail_min_ipv4_prefix=settings.min_ipv4_prefix,
                       guardrail_min_ipv6_prefix=settings.min_ipv6_prefix)


def for_user(session, services, user: str, now: dt.datetime | None = None) -> UserRightsizing:
    model = load_model(session, now or services.clock.now(), policy(services.settings))
    u = model.users.get(user)
    return UserRightsizing(model, recommend(model, u) if u is not None else None)


def describe_unused(item: UnusedItem) -> str:
    """One unused grant, in words."""
    d = item.detail
    where = f" of {item.permission_set}" if item.permission_set else ""
    if item.kind == "named_credential":
        methods = ", ".join(d.get("methods") or ["any method"])
        paths = ", ".join(d.get("paths") or ["any path"])
        return f"{d['named_credential']} ({methods} {paths}){where}: never called"
    if item.kind == "methods":
        return f"methods {', '.join(d['unused'])} on {d['named_credential']}{where}: unused (used: {', '.join(d['used'])})"
    if item.kind == "paths":
        return f"paths {', '.join(d['unused'])} on {d['named_credential']}{where}: never matched"
    if item.kind == "scope":
        holder = "the user" if d.get("held_by") == "integration_user" else item.permission_set
        return f"scope {d['scope']} held by {holder}: never requested"
    if item.kind == "api_type":
        return f"API type {d['api_type']}{where}: never used"
    if item.kind in ("objects", "object_permissions"):
        return f"object permissions {', '.join(d['unused'])}{where}: never exercised"
    return f"{item.kind.replace('_', ' ')}{where}"
