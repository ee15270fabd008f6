"""The one in-process snapshot of the landscape: what the broker decides on (integration users, assignments,
permission sets, grants, named credentials, principals), what the proxy calls (a Target per named
credential) and what the upstream token source needs (an UpstreamEntry per named credential), all built from
the same typed records in one load (govern.store.landscape_snapshot).

Why: the hot path (authenticate, decide, proxy, fetch a token) must not make database round trips per
request, and every consumer must see the same landscape. The snapshot's version is the stored landscape
version (govern.store.landscape_version), which moves in the same transaction as every write to what it
holds. It is compared with the stored one at most every CHECK_INTERVAL seconds (0.5 s) with one primary-key
read, and the snapshot is rebuilt when they differ, by one thread in the background: the other requests keep
the previous snapshot meanwhile, as long as it matched the stored version less than BOUND seconds (2 s) ago.

The bound (docs/operations.md, "One snapshot"): every request is answered from a snapshot that matched the
stored version at most BOUND seconds before the request started. So a change committed by any process is seen
by every request that starts BOUND seconds later, in every process; a commit made by this process is seen by
its next request (that request waits for the rebuild). Only the first build, a snapshot older than BOUND and
a process's own commits make a request wait.

A stored row whose settings do not parse fails only the calls that need it, with its ConfigurationError
(`broken`, `broken_users`), and is logged at each load; it never becomes a default.
"""
from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from govern.broker.proxy.errors import NamedCredentialNotFound
from govern.broker.proxy.targets import Target as ProxyTarget
from govern.broker.proxy.targets import build_target
from govern.broker.upstream.targets import PrincipalEntry, UpstreamEntry, principal_entries, settings_of, upstream_entry
from govern.broker.upstream.targets import Target as UpstreamTarget
from govern.domain.conditions import AccessConditions
from govern.errors import ConfigurationError, GovernError, NotFound
from govern.ports import Clock
from govern.store.landscape_snapshot import LandscapeRecords, LandscapeSnapshots, LandscapeUnavailable

log = logging.getLogger("govern.broker.landscape")
# How often the stored version is compared with the snapshot's (a primary-key read).
CHECK_INTERVAL = 0.5
# The bound: a landscape write committed by any process is seen by every request that starts this many seconds
# later, in every process (docs/operations.md, "One snapshot"; tests/e2e/test_one_snapshot.py). Between
# CHECK_INTERVAL and BOUND a rebuild runs in the background and requests keep the previous snapshot.
BOUND = 2.0


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
    objects: dict[str, Any]  # object name -> its validated permissions (govern.config_as_code.schema.ObjectPermissions)


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
    # Named credentials whose stored settings (or their credential's or system's) do not parse: the error,
    # raised to whoever uses them (and only them). They are in none of the maps above.
    broken: dict[str, GovernError] = field(default_factory=dict)
    # Integration users whose row, or a permission set assigned to them (a grant included), does not parse:
    # the error, raised on each of their calls. They are not in `users` (so nothing allows them by default).
    broken_users: dict[str, GovernError] = field(default_factory=dict)
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

    def user(self, name: str) -> UserView | None:
        """The integration user, None if unknown; raises the stored row's error if it does not parse."""
        if name in self.broken_users:
            raise self.broken_users[name]
        return self.users.get(name)

    def named_credential(self, name: str) -> NamedCredentialView | None:
        """The named credential, None if unknown; raises the stored row's error if it does not parse."""
        if name in self.broken:
            raise self.broken[name]
        return self.named_credentials.get(name)

    def proxy_target(self, name: str) -> ProxyTarget:
        if name in self.broken:
            raise self.broken[name]
        target = self.proxy_targets.get(name)
        if target is None:
            raise NamedCredentialNotFound(f"no named credential {name!r}")
        return target

    def upstream_target(self, name: str, principal: str | None) -> UpstreamTarget:
        if name in self.broken:
            raise self.broken[name]
        entry = self.upstream.get(name)
        if entry is None:
            raise NotFound(f"no named credential {name!r}")
        return entry.resolve(principal)

    def needs_reconnect(self, name: str, principal: str | None) -> bool:
        """Whether the principal the token source would resolve for (`name`, `principal`) is disconnected or
        had its refresh token refused: a set lookup, for every token request, cached or not."""
        entry = self.upstream.get(name)
        return entry is not None and bool(entry.reconnect) and (principal or "") in entry.reconnect


@dataclass(frozen=True, slots=True)
class _Shared:
    """What one credential gives each of its named credentials, built once per credential."""

    subjects: dict[str, str | None]
    entries: tuple[PrincipalEntry, ...]
    settings: dict[str, Any]
    named: tuple[str, ...]
    per_user: dict[str, str]


def build(records: LandscapeRecords) -> Landscape:
    """The snapshot from the typed records: indexes, views, and per named credential the proxy's Target and
    the token source's entry. What one credential contributes (its principals, token settings) is built once
    and shared by its named credentials. Rows that did not parse go to `broken` / `broken_users`."""
    failed: dict[tuple[str, int], ConfigurationError] = {}
    for problem in records.errors:
        failed.setdefault((problem.kind, problem.id), problem.error)
        log.error("a stored landscape row cannot be read; the calls that need it fail until it is applied again",
                  extra={"entity": problem.kind, "entity_id": problem.external_id, "error": problem.error.detail})
    user_names = {u.id: u.external_id for u in records.users}
    user_names.update((p.id, p.external_id) for p in records.errors if p.kind == "integration_user")
    systems = {y.id: y for y in records.systems}
    creds = {c.id: c for c in records.credentials}
    by_credential: dict[int, list] = {}
    for p in records.principals:
        by_credential.setdefault(p.credential_id, []).append(p)

    shared: dict[int, _Shared] = {}
    ncs: dict[str, NamedCredentialView] = {}
    nc_names: dict[int, str] = {}
    proxy_targets: dict[str, ProxyTarget] = {}
    upstream: dict[str, UpstreamEntry] = {}
    broken: dict[str, GovernError] = {}
    for nc in records.named_credentials:
        nc_names[nc.id] = nc.external_id
        cred = creds.get(nc.credential_id)
        system = systems.get(cred.system_id) if cred is not None else None
        if cred is None or system is None:
            error = (failed.get(("credential", nc.credential_id)) if cred is None
                     else failed.get(("system", cred.system_id)))
            if error is not None:
                broken[nc.external_id] = error
            continue
        own = shared.get(cred.id)
        if own is None:
            plist = by_credential.get(cred.id, [])
            own = shared[cred.id] = _Shared(
                subjects={p.name: p.subject for p in plist}, entries=principal_entries(plist, user_names),
                settings=settings_of(cred), named=tuple(p.name for p in plist if p.kind != "per_user"),
                per_user={user_names[p.integration_user_id]: p.name for p in plist
                          if p.kind == "per_user" and p.integration_user_id in user_names})
        proxy_targets[nc.external_id] = build_target(nc, cred, system, own.subjects)
        upstream[nc.external_id] = upstream_entry(nc, cred, own.settings, own.entries)
        ncs[nc.external_id] = NamedCredentialView(
            external_id=nc.external_id, credential=cred.external_id, api_type=nc.api_type,
            principal_type=cred.principal_type, protocol=cred.protocol or "", default_scopes=cred.params.scopes,
            named_principals=own.named, per_user_principals=own.per_user)
    for problem in records.errors:
        if problem.kind == "named_credential":
            nc_names[problem.id] = problem.external_id
            broken[problem.external_id] = problem.error
    grants: dict[int, list[GrantView]] = {}
    for g in records.grants:
        if g.named_credential_id not in nc_names:
            continue
        grants.setdefault(g.permission_set_id, []).append(GrantView(
            named_credential=nc_names[g.named_credential_id], principal=g.principal, methods=g.methods,
            paths=g.paths, objects=g.objects))
    psets: dict[int, PermissionSetView] = {}
    for ps in records.permission_sets:
        if ("permission_set", ps.id) in failed:  # one of its grants does not parse
            continue
        psets[ps.id] = PermissionSetView(
            external_id=ps.external_id, scopes=ps.scopes, api_types=ps.api_types,
            max_token_lifetime_seconds=ps.max_token_lifetime_seconds, system_permissions=ps.system_permissions,
            grants=tuple(grants.get(ps.id, ())), allow_budget_overdraft=ps.allow_budget_overdraft,
            conditions=ps.conditions)
    broken_users: dict[str, GovernError] = {p.external_id: p.error for p in records.errors
                                            if p.kind == "integration_user"}
    assignments: dict[str, list[AssignmentView]] = {}
    for a in records.assignments:
        user = user_names.get(a.integration_user_id)
        if user is None:
            continue
        view = psets.get(a.permission_set_id)
        if view is not None:
            assignments.setdefault(user, []).append(AssignmentView(view, a.expires_at))
        elif ("permission_set", a.permission_set_id) in failed:
            broken_users.setdefault(user, failed[("permission_set", a.permission_set_id)])
    users = {u.external_id: UserView(id=u.id, external_id=u.external_id, status=u.status, cidrs=u.cidrs,
                                     allowed_scopes=u.allowed_scopes)
             for u in records.users if u.external_id not in broken_users}
    return Landscape(version=records.version, users=users,
                     assignments={k: tuple(v) for k, v in assignments.items() if k in users},
                     named_credentials=ncs, permission_sets={p.external_id: p for p in psets.values()},
                     proxy_targets=proxy_targets, upstream=upstream, broken=broken, broken_users=broken_users)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector off while a snapshot is loaded and built. A rebuild at 100x volume
    allocates ~60,000 tracked objects, which set off two full collections of the whole heap per rebuild: about
    half its CPU time (bench/snapshot.py, bench/README.md), each collection holding the GIL from the request
    threads in one go. Reference counting frees everything as usual meanwhile; the few cycles a load leaves
    (the database session's own) wait for the collector, which runs again when the rebuild ends. Leaves the
    collector alone if something else turned it off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def load(source: SnapshotSource, known_version: int | None) -> tuple[int, Landscape | None]:
    """The stored version and, when it differs from `known_version`, the snapshot built from the rows."""
    with _collector_paused():
        version, records = source.load(known_version)
        return version, build(records) if records is not None else None


class SnapshotSource(Protocol):
    """Where the snapshot is read from (govern.store.landscape_snapshot.LandscapeSnapshots)."""

    def local_commits(self) -> int: ...

    def load(self, known_version: int | None) -> tuple[int, LandscapeRecords | None]: ...


class _State(NamedTuple):
    """Replaced as one value, so that a reader never pairs a snapshot with another snapshot's check time."""

    snapshot: Landscape | None
    confirmed_at: float  # monotonic time taken before the read that last found `snapshot` current
    commits: int  # this process's landscape commits made before that read
    refresh: int  # the number of the refresh that made that read


def _after_fork(cache: weakref.ref[LandscapeCache]) -> Callable[[], None]:
    def forget() -> None:
        found = cache()
        if found is not None:
            found._forget_the_refresh_thread()
    return forget


def _in_a_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="govern-landscape-refresh", daemon=True).start()


class LandscapeCache:
    """Holds the process's one Landscape (see the module docstring for the bound).

    `current()` returns the snapshot without any read while it was confirmed less than `check_interval` ago.
    Between `check_interval` and `bound` it starts one refresh in the background (a version read, and a rebuild
    if the version moved) and returns the snapshot it has. Past `bound`, before the first build, and after a
    landscape commit made by this process, the caller waits for a fresh enough read; one thread refreshes at a
    time, and the others wait for its result rather than start their own.

    If the database cannot be read, the last snapshot is used for up to `degraded_for` seconds after the last
    successful read (seed practice 2, degraded mode), then every caller gets LandscapeUnavailable (fail closed).
    After a failed read the database is not asked again for `check_interval`. `spawn` starts a background
    refresh (in a daemon thread; tests pass their own)."""

    def __init__(self, sessions: Any, clock: Clock, *, check_interval: float = CHECK_INTERVAL, bound: float = BOUND,
                 degraded_for: float = 60.0, source: SnapshotSource | None = None,
                 spawn: Callable[[Callable[[], None]], None] = _in_a_thread):
        if bound < check_interval:
            raise ValueError("the bound cannot be shorter than the check interval")
        self._source: SnapshotSource = source if source is not None else LandscapeSnapshots(sessions)
        self._clock = clock
        self._spawn = spawn
        self.check_interval = check_interval
        self.bound = bound
        self.degraded_for = degraded_for
        self._state = _State(None, float("-inf"), 0, 0)
        self._cond = threading.Condition()
        self._running = 0  # the refresh running now (0: none); refreshes are numbered from 1, one at a time
        self._started = 0  # the last refresh started
        self._finished = 0  # the last refresh finished (successful or not)
        self._failed = 0  # the last refresh that failed
        self._failed_at = float("-inf")  # when it started
        self._failure: BaseException | None = None
        self._read_at = float("-inf")  # when the last successful read started
        self._forced_at = float("-inf")
        self.builds = 0  # how many times the snapshot was (re)built, for tests and metrics
        os.register_at_fork(after_in_child=_after_fork(weakref.ref(self)))

    def _forget_the_refresh_thread(self) -> None:
        """In a forked child: the parent's refresh thread (if one was running) does not exist here."""
        self._cond = threading.Condition()
        self._running = 0

    @property
    def version(self) -> int:
        """The current snapshot's landscape version (checking it first, like current())."""
        return self.current().version

    def current(self) -> Landscape:
        now = self._clock.monotonic()
        state = self._state
        if state.snapshot is not None and state.commits == self._source.local_commits():
            age = now - state.confirmed_at
            if age < self.check_interval:
                return state.snapshot
            if age < self.bound:
                self._refresh_in_background(now)
                return state.snapshot
        return self._wait(now, lambda s: now - s.confirmed_at < self.bound)

    def recheck(self, min_interval: float = 0.5) -> Landscape:
        """Re-validate now (at most once per `min_interval`): for a user or named credential created a
        moment ago by another process, which the snapshot cannot know yet. Waits for a read that starts after
        this call."""
        now = self._clock.monotonic()
        if now - self._forced_at < min_interval:
            return self.current()
        self._forced_at = now
        asked = self._started
        return self._wait(now, lambda s: s.refresh > asked)

    def invalidate(self) -> None:
        """Re-check the stored version on the next call (which waits for it)."""
        with self._cond:
            self._state = self._state._replace(confirmed_at=float("-inf"))

    # --- refreshing ---------------------------------------------------------------------------------------

    def _begin(self) -> int:
        """Number and mark a new refresh; the caller holds the condition's lock and runs it."""
        self._started += 1
        self._running = self._started
        return self._running

    def _refresh_in_background(self, now: float) -> None:
        with self._cond:
            if self._running or (self._failed == self._finished and now - self._failed_at < self.check_interval):
                return  # one at a time; and a database that just failed is not asked again at once
            number = self._begin()
        try:
            self._spawn(lambda: self._refresh(number))
        except RuntimeError:  # no thread to be had: give the turn back; the next caller past the bound reads
            log.warning("cannot start the landscape refresh thread; a request will refresh past the bound")
            with self._cond:
                self._running = 0
                self._cond.notify_all()

    def _wait(self, asked_at: float, fresh: Callable[[_State], bool]) -> Landscape:
        """A snapshot for which `fresh` holds and that has this process's commits so far."""
        commits = self._source.local_commits()
        with self._cond:
            asked = self._started
        while True:
            with self._cond:
                state = self._state
                if state.snapshot is not None and state.commits >= commits and fresh(state):
                    return state.snapshot
                if self._running:
                    finished = self._finished
                    while self._finished == finished:
                        self._cond.wait()
                    continue
                if self._failed > asked or (self._failed == self._finished
                                            and asked_at - self._failed_at < self.check_interval):
                    # A read that started after this call failed, or one failed just before it.
                    return self._degraded(asked_at)
                number = self._begin()
            self._refresh(number)

    def _degraded(self, asked_at: float) -> Landscape:
        snapshot = self._state.snapshot
        if snapshot is not None and asked_at - self._read_at < self.degraded_for:
            return snapshot
        if self._failure is None or isinstance(self._failure, LandscapeUnavailable):
            raise LandscapeUnavailable("the landscape cannot be read from the database")
        raise self._failure

    def _refresh(self, number: int) -> None:
        """Read the stored version and, if it moved, rebuild. Refresh `number` (see _begin), one at a time."""
        started = self._clock.monotonic()
        commits = self._source.local_commits()
        state = self._state
        failure: BaseException | None = None
        rebuilt: Landscape | None = None
        try:
            _version, rebuilt = load(self._source, state.snapshot.version if state.snapshot is not None else None)
        except LandscapeUnavailable as exc:
            failure = exc
            log.warning("landscape re-check failed; using the last snapshot" if state.snapshot is not None
                        else "landscape cannot be read", extra={"exc_type": exc.cause or type(exc).__name__})
        except Exception as exc:  # noqa: BLE001 - a refresh must always finish; its waiters get the error
            failure = exc
            log.exception("landscape snapshot rebuild failed")
        with self._cond:
            if failure is None:
                if rebuilt is not None:
                    self.builds += 1
                self._state = _State(rebuilt if rebuilt is not None else state.snapshot, started, commits, number)
                self._read_at = started
            else:
                self._failed, self._failed_at, self._failure = number, started, failure
            self._finished = number
            self._running = 0
            self._cond.notify_all()
