"""The one in-process snapshot of the landscape: what the broker decides on (integration users, assignments,
permission sets, grants, named credentials, principals), what the proxy calls (a Target per named
credential) and what the upstream token source needs (an UpstreamEntry per named credential), all built from
the same rows in one load.

Why: the hot path (authenticate, decide, proxy, fetch a token) must not make database round trips per
request, and every consumer must see the same landscape. The snapshot's version is the stored landscape
version (govern.store.landscape_version), which moves in the same transaction as every write to what it
holds. It is compared with the stored one at most every `check_interval` seconds (0.5 s) with one primary-key
read, and the snapshot is rebuilt when they differ. So an apply, a suspension, a narrowed CIDR list, a changed
named credential or a new secret version, committed by any process, is seen by every request that starts more
than `check_interval` seconds after the commit, in every process (docs/operations.md, "One snapshot"). A commit
made by this process is seen by its next request.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.broker.proxy.errors import NamedCredentialNotFound
from govern.broker.proxy.targets import Target as ProxyTarget
from govern.broker.proxy.targets import build_target
from govern.broker.upstream.targets import Target as UpstreamTarget
from govern.broker.upstream.targets import UpstreamEntry, upstream_entry
from govern.domain.conditions import AccessConditions
from govern.domain.resilience import parse_stored
from govern.errors import GovernError, NotFound
from govern.ports import Clock
from govern.store import landscape_version
from govern.store.tables import (Assignment, ExternalCredential, IntegrationUser, NamedCredential, PermissionGrant,
                                 PermissionSet, Principal, System)


log = logging.getLogger("govern.broker.landscape")
# The bound: a landscape write committed by any process is seen by every request that starts this many seconds
# later, in every process (docs/operations.md, "One snapshot"; tests/e2e/test_one_snapshot.py).
CHECK_INTERVAL = 0.5


class LandscapeUnavailable(GovernError):
    code = "landscape_unavailable"
    status = 503
    title = "govern cannot read its landscape"


@dataclass(frozen=True)
class UserView:
    id: int
    external_id: str
    status: str
    cidrs: tuple[str, ...]
    allowed_scopes: tuple[str, ...]


@dataclass(frozen=True, eq=False)  # identity: views are unique within a snapshot
class GrantView:
    named_credential: str
    principal: str | None
    methods: tuple[str, ...]
    paths: tuple[str, ...]
    objects: dict[str, Any]


@dataclass(frozen=True, eq=False)
class PermissionSetView:
    external_id: str
    scopes: tuple[str, ...]
    api_types: tuple[str, ...]
    max_token_lifetime_seconds: int
    system_permissions: tuple[str, ...]
    grants: tuple[GrantView, ...]
    allow_budget_overdraft: bool = False
    conditions: AccessConditions | None = None  # when, how often and from where the grants hold


@dataclass(frozen=True)
class AssignmentView:
    permission_set: PermissionSetView
    expires_at: dt.date | None

    def live_on(self, today: dt.date) -> bool:
        """An assignment `until` a date is valid through that whole day (UTC)."""
        return self.expires_at is None or today <= self.expires_at


@dataclass(frozen=True)
class NamedCredentialView:
    external_id: str
    credential: str
    api_type: str
    principal_type: str
    named_principals: tuple[str, ...]
    per_user_principals: dict[str, str]  # integration user external id -> principal name
    protocol: str = ""  # the external credential's protocol: oauth2_* issue tokens, the rest are proxy-only
    default_scopes: tuple[str, ...] = ()  # the external credential's scopes (never a fallback for a grant)

    @property
    def issues_tokens(self) -> bool:
        """Only OAuth credentials have a short-lived token to hand out; a static secret (basic, API key,
        custom header) is used only by the proxy and never leaves govern."""
        return self.protocol.startswith("oauth2")


T = TypeVar("T")


@dataclass
class Landscape:
    version: int  # the stored landscape version these rows were read at (or after)
    users: dict[str, UserView]
    assignments: dict[str, tuple[AssignmentView, ...]]
    named_credentials: dict[str, NamedCredentialView]
    permission_sets: dict[str, PermissionSetView]
    proxy_targets: dict[str, ProxyTarget] = field(default_factory=dict)
    upstream: dict[str, UpstreamEntry] = field(default_factory=dict)
    # Named credentials whose stored settings do not parse: the error, raised to whoever uses them (and only them).
    broken: dict[str, GovernError] = field(default_factory=dict)
    # Things derived from this snapshot by its users (the parsed Cedar entity store), built once.
    derived: dict[Any, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def derive(self, key: Any, build: Callable[[], T]) -> T:
        found = self.derived.get(key)
        if found is None:
            with self.lock:
                found = self.derived.get(key)
                if found is None:
                    found = self.derived[key] = build()
        return found

    def proxy_target(self, name: str) -> ProxyTarget:
        target = self.proxy_targets.get(name)
        if target is None:
            if name in self.broken:
                raise self.broken[name]
            raise NamedCredentialNotFound(f"no named credential {name!r}")
        return target

    def upstream_target(self, name: str, principal: str | None) -> UpstreamTarget:
        entry = self.upstream.get(name)
        if entry is None:
            if name in self.broken:
                raise self.broken[name]
            raise NotFound(f"no named credential {name!r}")
        return entry.resolve(principal)


class LandscapeCache:
    """Holds the process's one Landscape. `current()` compares its version with the stored one at most every
    `check_interval` seconds, at once after a landscape commit in this process, and rebuilds it when they
    differ (one thread rebuilds, the others wait for it). If the database cannot be read, the last snapshot is
    used for up to `degraded_for` seconds (seed practice 2, degraded mode), then every caller gets
    LandscapeUnavailable (fail closed)."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *, check_interval: float = CHECK_INTERVAL,
                 degraded_for: float = 60.0):
        self._sessions = sessions
        self._clock = clock
        self.check_interval = check_interval
        self.degraded_for = degraded_for
        self._snapshot: Landscape | None = None
        self._checked_at = float("-inf")
        self._read_at = float("-inf")  # the last time the stored version was read successfully
        self._local_commits = landscape_version.local_commits()
        self._forced_at = float("-inf")
        self._lock = threading.Lock()
        self.builds = 0  # how many times the snapshot was (re)built, for tests and metrics

    @property
    def version(self) -> int:
        """The current snapshot's landscape version (checking it first, like current())."""
        return self.current().version

    def recheck(self, min_interval: float = 0.5) -> Landscape:
        """Re-validate now (at most once per `min_interval`): for a user or named credential created a
        moment ago by another process, which the snapshot cannot know yet."""
        now = self._clock.monotonic()
        if now - self._forced_at >= min_interval:
            self._forced_at = now
            self._checked_at = float("-inf")
        return self.current()

    def invalidate(self) -> None:
        """Re-check the stored version on the next call."""
        self._checked_at = float("-inf")

    def _fresh(self, snap: Landscape | None, now: float) -> bool:
        return (snap is not None and now - self._checked_at < self.check_interval
                and self._local_commits == landscape_version.local_commits())

    def current(self) -> Landscape:
        snap = self._snapshot
        now = self._clock.monotonic()
        if self._fresh(snap, now):
            return snap  # type: ignore[return-value]
        with self._lock:
            snap = self._snapshot
            now = self._clock.monotonic()  # taken before the read: the bound counts from here
            if self._fresh(snap, now):
                return snap  # type: ignore[return-value]
            commits = landscape_version.local_commits()
            try:
                with self._sessions() as s:
                    # The version first, then the rows: a write committed between the two makes the snapshot
                    # newer than its version says, never older, and the next check rebuilds it once more.
                    version = landscape_version.read_version(s.connection())
                    if snap is None or version != snap.version:
                        snap = self._build(s, version)
                        self._snapshot = snap
                        self.builds += 1
                self._read_at = now
            except sa.exc.SQLAlchemyError as exc:
                if snap is None or now - self._read_at >= self.degraded_for:
                    raise LandscapeUnavailable("the landscape cannot be read from the database") from None
                log.warning("landscape re-check failed; using the last snapshot",
                            extra={"exc_type": type(exc).__name__})
            self._checked_at = now
            self._local_commits = commits
            return snap

    def _build(self, s: Session, version: int) -> Landscape:
        systems: dict[int | None, System] = {y.id: y for y in s.execute(sa.select(System)).scalars()}
        creds: dict[int | None, ExternalCredential] = {c.id: c for c in s.execute(sa.select(ExternalCredential)).scalars()}
        users_by_id: dict[int | None, IntegrationUser] = {u.id: u for u in s.execute(sa.select(IntegrationUser)).scalars()}
        principals: dict[int, list[Principal]] = {}
        for p in s.execute(sa.select(Principal)).scalars():
            principals.setdefault(p.credential_id, []).append(p)
        ncs: dict[str, NamedCredentialView] = {}
        nc_by_id: dict[int | None, str] = {}
        user_names = {i: u.external_id for i, u in users_by_id.items() if i is not None}
        proxy_targets: dict[str, ProxyTarget] = {}
        upstream: dict[str, UpstreamEntry] = {}
        broken: dict[str, GovernError] = {}
        for nc in s.execute(sa.select(NamedCredential)).scalars():
            cred = creds.get(nc.credential_id)
            plist = principals.get(nc.credential_id, [])
            system = systems.get(cred.system_id) if cred else None
            if cred is not None and system is not None:
                try:
                    proxy_targets[nc.external_id] = build_target(nc, cred, system, plist)
                    upstream[nc.external_id] = upstream_entry(nc, cred, plist, user_names)
                except GovernError as exc:  # a row that does not parse fails its own calls, not the snapshot
                    broken[nc.external_id] = exc
            ncs[nc.external_id] = NamedCredentialView(
                external_id=nc.external_id, credential=cred.external_id if cred else "", api_type=nc.api_type or "REST",
                principal_type=(cred.principal_type if cred else "named") or "named",
                protocol=(cred.protocol if cred else "") or "", default_scopes=tuple(cred.scopes or ()) if cred else (),
                named_principals=tuple(p.name for p in plist if p.kind != "per_user"),
                per_user_principals={users_by_id[p.integration_user_id].external_id: p.name for p in plist
                                     if p.kind == "per_user" and p.integration_user_id in users_by_id})
            nc_by_id[nc.id] = nc.external_id
        grants: dict[int, list[GrantView]] = {}
        for g in s.execute(sa.select(PermissionGrant).order_by(col(PermissionGrant.position), col(PermissionGrant.id))).scalars():
            if g.named_credential_id not in nc_by_id:
                continue
            grants.setdefault(g.permission_set_id, []).append(GrantView(
                named_credential=nc_by_id[g.named_credential_id], principal=g.principal,
                methods=tuple(m.upper() for m in (g.methods or ())), paths=tuple(g.paths or ()),
                objects=dict(g.objects or {})))
        psets: dict[int | None, PermissionSetView] = {}
        for ps in s.execute(sa.select(PermissionSet)).scalars():
            psets[ps.id] = PermissionSetView(
                external_id=ps.external_id, scopes=tuple(ps.scopes or ()), api_types=tuple(ps.api_types or ()),
                max_token_lifetime_seconds=int(ps.max_token_lifetime_seconds),
                system_permissions=tuple(ps.system_permissions or ()), grants=tuple(grants.get(ps.id or 0, ())),
                allow_budget_overdraft=bool(ps.allow_budget_overdraft),
                conditions=parse_stored(AccessConditions, ps.conditions, f"permission set {ps.external_id!r} conditions")
                if ps.conditions else None)
        assignments: dict[str, list[AssignmentView]] = {}
        for a in s.execute(sa.select(Assignment)).scalars():
            user = users_by_id.get(a.integration_user_id)
            if user is None or a.permission_set_id not in psets:
                continue
            assignments.setdefault(user.external_id, []).append(AssignmentView(psets[a.permission_set_id], a.expires_at))
        users = {u.external_id: UserView(id=u.id or 0, external_id=u.external_id, status=u.status,
                                         cidrs=tuple(u.allowed_cidrs or ()), allowed_scopes=tuple(u.allowed_scopes or ()))
                 for u in users_by_id.values()}
        return Landscape(version=version, users=users,
                         assignments={k: tuple(v) for k, v in assignments.items()},
                         named_credentials=ncs,
                         permission_sets={p.external_id: p for p in psets.values()},
                         proxy_targets=proxy_targets, upstream=upstream, broken=broken)
