"""The audit's in-memory model of a landscape: plain data, no database, no framework.

It is filled either from govern's tables (govern.store.audit_loader, which aggregates the decision log in
SQL) or from Salesforce metadata (govern.audit.salesforce). The rules in govern.audit.rules read only
this model, so the same catalogue runs on both sources.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from govern.domain.federation import FederationTrust


@dataclass(frozen=True)
class Location:
    """Where an element came from: a metadata file and line (for SARIF), or a govern table row."""

    file: str
    line: int = 1


@dataclass
class SystemM:
    id: str
    kind: str = "generic"
    owner: str | None = None
    escalation_contact: str | None = None
    runbook_url: str | None = None
    daily_api_budget: int | None = None
    api_version_policy: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # free-form config values (contract, sla)
    location: Location | None = None


@dataclass
class PrincipalM:
    name: str
    kind: str = "named"  # named | per_user
    user: str | None = None
    location: Location | None = None


@dataclass
class CredentialM:
    """An ExternalCredential (govern) or a Salesforce ExternalCredential / Connected App's auth side."""

    id: str
    system: str | None = None
    protocol: str = ""
    principal_type: str = "named"
    scopes: list[str] = field(default_factory=list)
    refresh_token_policy: str | None = None
    rotation: dict[str, Any] = field(default_factory=dict)
    principals: list[PrincipalM] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None
    # declared expiries (docs/expiry.md): client_secret_expires (ISO date), refresh_token_lifetime/_idle (seconds)
    expiry: dict[str, Any] = field(default_factory=dict)


@dataclass
class NamedCredentialM:
    id: str
    credential: str | None = None
    url: str = ""
    api_version: str | None = None
    api_type: str = "REST"
    methods: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    legacy: bool = False  # Salesforce legacy model: auth inline, no ExternalCredential
    protocol: str | None = None  # legacy only: Password, Oauth, AwsSv4, NoAuthentication...
    principal_type: str | None = None  # legacy only: NamedUser, PerUser, Anonymous
    inline_secrets: list[tuple[str, Location | None]] = field(default_factory=list)  # (element name, where)
    created_at: dt.datetime | None = None  # govern only: younger than the usage window means not judged on use
    element_lines: dict[str, Location] = field(default_factory=dict)  # metadata: endpoint, protocol, principalType
    config: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None


@dataclass
class ObjectPerm:
    read: bool = False
    create: bool = False
    edit: bool = False
    delete: bool = False
    view_all: bool = False
    modify_all: bool = False
    fields: dict[str, str] = field(default_factory=dict)  # field -> read | edit
    location: Location | None = None


@dataclass
class GrantM:
    named_credential: str | None = None
    principal: str | None = None
    methods: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    objects: dict[str, ObjectPerm] = field(default_factory=dict)


@dataclass
class PermissionSetM:
    """A permission set; also a Salesforce profile or permission set group (kind), flattened."""

    id: str
    kind: str = "permission_set"  # permission_set | profile | permission_set_group | muting_permission_set
    description: str = ""
    label: str = ""
    scopes: list[str] = field(default_factory=list)
    api_types: list[str] = field(default_factory=list)
    max_token_lifetime_seconds: int | None = None
    system_permissions: list[str] = field(default_factory=list)
    system_permission_lines: dict[str, Location] = field(default_factory=dict)
    objects: dict[str, ObjectPerm] = field(default_factory=dict)
    grants: list[GrantM] = field(default_factory=list)
    login_ip_ranges: list[tuple[str, str]] = field(default_factory=list)  # profiles: (start, end)
    members: list[str] = field(default_factory=list)  # groups: permission sets
    # Salesforce: the External Credential principals this set may use ("Credential-Principal"), as enabled
    principal_access: list[str] = field(default_factory=list)
    muting: list[str] = field(default_factory=list)  # groups: muting permission sets
    # govern: the access conditions (governance.yaml `conditions:`, docs/access-conditions.md), as stored
    conditions: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None


@dataclass
class AssignmentM:
    permission_set: str
    expires_at: dt.date | None = None


@dataclass
class UserM:
    id: str
    name: str = ""
    owner: str | None = None
    justification: str | None = None
    status: str = "active"
    review_date: dt.date | None = None
    source_system: str | None = None
    client_auth_method: str = "client_secret_basic"
    jwks: dict[str, Any] = field(default_factory=dict)  # public keys only (private_key_jwt)
    allowed_cidrs: list[str] = field(default_factory=list)
    allowed_scopes: list[str] = field(default_factory=list)
    created_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    client_secret_set_at: dt.datetime | None = None
    previous_secret_expires_at: dt.datetime | None = None
    has_previous_secret: bool = False
    assignments: list[AssignmentM] = field(default_factory=list)
    location: Location | None = None
    trust: FederationTrust | None = None  # auth "federated": the issuers trusted instead of a secret


@dataclass
class ConnectedAppM:
    id: str
    label: str = ""
    scopes: list[str] = field(default_factory=list)
    ip_relaxation: str | None = None
    refresh_token_policy: str | None = None
    callback_urls: list[str] = field(default_factory=list)
    has_certificate: bool = False
    certificate: dict[str, Any] = field(default_factory=dict)  # not_after, signature_hash, key_size (or error)
    inline_secrets: list[tuple[str, Location | None]] = field(default_factory=list)
    element_lines: dict[str, Location] = field(default_factory=dict)
    ip_ranges: list[tuple[str, str]] = field(default_factory=list)  # the app's trusted IP ranges: (start, end)
    permission_sets: list[str] = field(default_factory=list)  # permissionSetName / profileName it is assigned to
    contact: str | None = None  # contactEmail
    description: str = ""
    location: Location | None = None


@dataclass
class SecretVersionM:
    version: int
    stage: str
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None


@dataclass
class SecretM:
    id: str
    owner_kind: str = "credential"
    owner: str = ""
    secret_field: str = ""
    rotator: str | None = None
    schedule: str | None = None
    overlap_seconds: int = 86400
    set_at: dt.datetime | None = None
    versions: list[SecretVersionM] = field(default_factory=list)
    last_rotation_state: str | None = None
    last_rotation_error: str | None = None
    last_rotation_at: dt.datetime | None = None


@dataclass
class RequestPattern:
    """One distinct request shape exercised by a user in the window (aggregated in SQL)."""

    named_credential: str | None
    method: str | None
    path: str | None
    resource_object: str | None
    api_type: str | None
    scopes: tuple[str, ...] = ()
    count: int = 0
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None


@dataclass
class PollM:
    """The same GET repeated by one user: its calls whose gap to the previous one was at most
    policy.poll_max_interval_seconds, and the mean and spread of those gaps (aggregated in SQL)."""

    named_credential: str | None
    path: str | None
    intervals: int = 0
    mean_seconds: float = 0.0
    stdev_seconds: float = 0.0
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None


@dataclass
class WriteMinuteM:
    """Single-record writes (REST, not composite, bulk or SOAP) by one user to one object in one minute."""

    named_credential: str | None
    resource_object: str | None
    method: str
    minute: dt.datetime
    count: int = 0
    path: str | None = None  # when the record has no object: its path (a Salesforce one names it)


@dataclass(frozen=True, slots=True)
class CallHourM:
    """One user's allowed calls in one UTC hour of the window: how many, the first and the last (aggregated in
    SQL); for a user read by hour of the week, its calls in one such hour, all at the hour's instant (users with the
    same count there share the value). The time-window recommendation (govern.audit.time_windows) reads and replays
    these."""

    hour: dt.datetime
    count: int
    first_at: dt.datetime
    last_at: dt.datetime


@dataclass
class UsageM:
    """What one integration user did in the window; all aggregates, never raw decisions."""

    user: str
    allowed: int = 0
    denied: int = 0
    last_at: dt.datetime | None = None
    patterns: list[RequestPattern] = field(default_factory=list)  # allowed requests only
    denied_by_day: dict[dt.date, int] = field(default_factory=dict)
    total_by_day: dict[dt.date, int] = field(default_factory=dict)
    principals: dict[tuple[str, str], int] = field(default_factory=dict)  # (named_credential, principal) -> count
    polls: list[PollM] = field(default_factory=list)  # behaviour rules (GOV-BEHAV-002)
    write_minutes: list[WriteMinuteM] = field(default_factory=list)  # GOV-BEHAV-003
    call_hours: list[CallHourM] = field(default_factory=list)  # users with window_min_calls allowed calls or more


@dataclass
class UnknownElement:
    file: str
    line: int
    element: str
    kind: str


@dataclass
class AuditPolicy:
    """Thresholds the rules use; defaults follow the seed practices and common Salesforce guidance."""

    window_days: int = 30
    stale_days: int = 90
    secret_max_age_days: int = 90
    max_token_lifetime_seconds: int = 3600
    min_ipv4_prefix: int = 16  # advice: broader ranges are findings
    min_ipv6_prefix: int = 48
    # What the IP guardrail refuses (GOVERN_MIN_IPV4_PREFIX / _IPV6_): never looser than the advice above
    guardrail_min_ipv4_prefix: int = 8
    guardrail_min_ipv6_prefix: int = 32
    certificate_warning_days: int = 30  # a certificate expiring sooner is a finding (GOV-SECRET-006)
    min_salesforce_api_version: float = 31.0  # versions 21.0-30.0 are retired (Summer '25)
    denied_spike_min: int = 20
    denied_spike_factor: float = 3.0
    # Behaviour anti-patterns (docs/audit.md, "Behaviour"): polling, synchronous bulk, insert instead of upsert,
    # the god integration
    poll_min_calls: int = 60  # the same GET at least this many times...
    poll_max_interval_seconds: float = 300.0  # ...each within 5 minutes of the previous one...
    poll_max_jitter: float = 0.2  # ...with gaps this regular (standard deviation / mean)
    # only GETs repeated at least once an hour on average (first to last call) have their gaps measured
    poll_candidate_seconds: float = 3600.0
    bulk_min_writes: int = 201  # seed: "Bulk API 2.0 for volume > 200 records"...
    bulk_window_minutes: int = 10  # ...single-record writes to one object within this many minutes
    upsert_min_inserts: int = 20  # POST creates of an object that has an external-id upsert path
    god_min_systems: int = 3  # one user writing to this many systems...
    god_min_objects: int = 10  # ...or to this many objects
    # A time window is recommended from observed use (govern.audit.time_windows) only for a user with at least
    # this many allowed calls in the window: fewer say too little about when it runs.
    window_min_calls: int = 20


@dataclass
class AuditModel:
    source: str  # govern | salesforce: the kind of source, which the rules read
    now: dt.datetime
    name: str = ""  # the source's name: govern, or an imported org's (findings and fingerprints carry it)
    policy: AuditPolicy = field(default_factory=AuditPolicy)
    systems: dict[str, SystemM] = field(default_factory=dict)
    credentials: dict[str, CredentialM] = field(default_factory=dict)
    named_credentials: dict[str, NamedCredentialM] = field(default_factory=dict)
    permission_sets: dict[str, PermissionSetM] = field(default_factory=dict)
    users: dict[str, UserM] = field(default_factory=dict)
    connected_apps: dict[str, ConnectedAppM] = field(default_factory=dict)
    secrets: list[SecretM] = field(default_factory=list)
    usage: dict[str, UsageM] = field(default_factory=dict)
    usage_loaded: bool = False  # False for metadata-only sources: usage rules do not run
    # False when the decision log starts inside the usage window (just enabled, or empty): absence of use
    # then proves nothing, so nobody is judged on unused grants (as for users younger than the window)
    log_covers_window: bool = True
    log_since: dt.datetime | None = None
    # user -> its last allowed decision within policy.stale_days (longer than the usage window)
    last_allowed_at: dict[str, dt.datetime] = field(default_factory=dict)
    unknown_elements: list[UnknownElement] = field(default_factory=list)
    # derived data the rules share (right-sizing, user index); rules must not mutate the model while it is used
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def today(self) -> dt.date:
        return self.now.date()

    def user_permission_sets(self, user: UserM) -> list[PermissionSetM]:
        return [self.permission_sets[a.permission_set] for a in user.assignments if a.permission_set in self.permission_sets]

    def effective_permissions(self, ps: PermissionSetM) -> set[str]:
        """A group's permissions are its members' minus its muting sets' (Salesforce muting)."""
        if ps.kind != "permission_set_group":
            return set(ps.system_permissions)
        granted: set[str] = set()
        for member in ps.members:
            if member in self.permission_sets:
                granted |= set(self.permission_sets[member].system_permissions)
        for muted in ps.muting:
            if muted in self.permission_sets:
                granted -= set(self.permission_sets[muted].system_permissions)
        return granted

    def users_of(self, ps_id: str) -> list[str]:
        index = self.cache.get("users_of")
        if index is None:
            index = {}
            for u in self.users.values():
                for a in u.assignments:
                    index.setdefault(a.permission_set, set()).add(u.id)
            self.cache["users_of"] = index
        return sorted(index.get(ps_id, ()))

    def locate(self, subject_kind: str, subject: str) -> Location | None:
        """Where the entity a finding is about was declared: the subject's own entity, else the entity its
        id starts with (`user/set#grant` is about the user's grant). None when nothing recorded a place."""
        if subject_kind == "metadata_file":
            return Location(subject, 1)
        head = subject.split("#", 1)[0]
        first = head.split("/", 1)[0]
        by_kind: dict[str, dict[str, Any]] = {
            "system": self.systems, "credential": self.credentials, "named_credential": self.named_credentials,
            "integration_user": self.users, "permission_set": self.permission_sets,
            "profile": self.permission_sets, "connected_app": self.connected_apps}
        tables: list[dict[str, Any]] = [by_kind[subject_kind]] if subject_kind in by_kind else []
        tables += [self.users, self.permission_sets, self.named_credentials, self.credentials, self.systems,
                   self.connected_apps]
        for key in (head, first):
            for table in tables:
                entity = table.get(key)
                if entity is not None and getattr(entity, "location", None) is not None:
                    return entity.location
        return None

    def system_of_named_credential(self, nc_id: str | None) -> str | None:
        nc = self.named_credentials.get(nc_id or "")
        if nc is None:
            return None
        cred = self.credentials.get(nc.credential or "")
        return cred.system if cred else None
