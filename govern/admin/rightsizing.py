"""One integration user's "granted vs used": the audit's right-sizing (govern.audit.rightsizing) computed for
the user's page from the same model `govern audit` loads, and the words the page shows for it."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

import sqlalchemy as sa

from govern.audit.model import AuditModel, AuditPolicy
from govern.audit.rightsizing import Recommendation, UnusedItem, governance_yaml, recommend
from govern.store.audit_loader import load_model
from govern.store.landscape_version import read_version
from govern.store.tables import Decision

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


# The model also depends on the time (the window's start, whether a user is younger than the window): a model
# is reused for at most this long even when nothing was written.
MODEL_TTL_SECONDS = 60.0


@dataclass
class _Entry:
    key: tuple[int, int]
    built_at: float
    model: AuditModel
    recommendations: dict[str, Recommendation | None] = field(default_factory=dict)


class ModelCache:
    """The audit model behind the users' pages, built once per (landscape version, decision-log position).

    Building it reads every decision of the window, which a page view must not do each time. The key is what
    the model is made of: the landscape (its stored version moves with every write to it, whoever makes it:
    govern.store.landscape_version) and the decision log (its last record's id); both are read fresh, in one
    primary-key read and one index read, on every view. A recommendation is computed once per user and entry.
    `builds` counts the models built (for tests). The apply button never uses this cache: the server
    recomputes the recommendation before applying it (govern.admin.commands.apply_rightsizing)."""

    def __init__(self, ttl_seconds: float = MODEL_TTL_SECONDS):
        self.ttl = ttl_seconds
        self.builds = 0
        self._entry: _Entry | None = None
        self._lock = threading.Lock()

    def for_user(self, session, services, user: str) -> UserRightsizing:
        connection = session.connection()
        key = (read_version(connection), int(session.execute(sa.select(sa.func.max(Decision.id))).scalar() or 0))
        tick = services.clock.monotonic()
        with self._lock:
            entry = self._entry
            if entry is None or entry.key != key or tick - entry.built_at > self.ttl or tick < entry.built_at:
                entry = _Entry(key, tick, load_model(session, services.clock.now(), policy(services.settings)))
                self._entry = entry
                self.builds += 1
            if user not in entry.recommendations:
                u = entry.model.users.get(user)
                entry.recommendations[user] = recommend(entry.model, u) if u is not None else None
            return UserRightsizing(entry.model, entry.recommendations[user])


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
