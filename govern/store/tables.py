"""SQLModel tables: govern's system of record.

Every entity users declare carries `external_id`, the stable name written in governance.yaml; the
integer `id` is internal. No column ever holds a secret value: secrets are referenced by
(store, mount, path, version) in `secret_ref`, and the local store keeps only AES-GCM ciphertexts in
`local_secret`.

Schema changes need an Alembic migration in migrations/versions (tests/test_migrations.py checks
that models and migrations agree).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from govern.domain.federation import FederationTrust
from govern.domain.resilience import parse_stored


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json(default=None, nullable: bool = False):
    return Field(default_factory=(default or dict), sa_column=sa.Column(sa.JSON, nullable=nullable))


class FederationTrustJSON(sa.types.TypeDecorator):
    """An integration user's `trust:` (govern.domain.federation.FederationTrust), stored as JSON and read back as the
    typed value: a row that does not parse fails where it is loaded (ConfigurationError), never a silent default.
    No trust is NULL."""

    impl = sa.JSON
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or value == {}:
            return None
        trust = value if isinstance(value, FederationTrust) else FederationTrust.model_validate(value)
        return trust.model_dump(mode="json", exclude_none=True)

    def process_result_value(self, value, dialect):
        return parse_stored(FederationTrust, value, "integration_user.trust") if value else None


def _ts(nullable: bool = True, index: bool = False):
    return Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable, index=index))


def _created():
    return Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class System(SQLModel, table=True):
    __tablename__ = "system"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)
    source_file: Optional[str] = Field(default=None, max_length=1000)  # where `govern apply` read it
    source_line: Optional[int] = None
    name: str = Field(default="", max_length=300)
    kind: str = Field(default="generic", max_length=50)
    description: str = Field(default="", max_length=2000)
    owner: Optional[str] = Field(default=None, max_length=300)
    escalation_contact: Optional[str] = Field(default=None, max_length=300)
    sla: dict[str, Any] = _json()
    rate_limit_per_minute: Optional[int] = None
    daily_api_budget: Optional[int] = None
    api_version_policy: Optional[str] = Field(default=None, max_length=500)
    maintenance_windows: list[dict[str, Any]] = _json(list)  # govern.domain.maintenance.MaintenanceWindow items
    runbook_url: Optional[str] = Field(default=None, max_length=1000)
    scopes: list[str] = _json(list)
    contract: dict[str, Any] = _json()  # schema links, error codes, versioning notes
    created_at: dt.datetime = _created()
    updated_at: dt.datetime = _created()


class ExternalCredential(SQLModel, table=True):
    __tablename__ = "external_credential"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)
    source_file: Optional[str] = Field(default=None, max_length=1000)  # where `govern apply` read it
    source_line: Optional[int] = None
    system_id: int = Field(foreign_key="system.id", index=True)
    protocol: str = Field(max_length=50)
    token_url: Optional[str] = Field(default=None, max_length=1000)
    authorize_url: Optional[str] = Field(default=None, max_length=1000)
    client_id: Optional[str] = Field(default=None, max_length=500)
    client_auth_method: Optional[str] = Field(default=None, max_length=50)
    scopes: list[str] = _json(list)
    audience: Optional[str] = Field(default=None, max_length=1000)
    resource: list[str] = _json(list)  # RFC 8707 resource indicators
    token_params: dict[str, str] = _json()  # extra token-request form parameters (never secrets)
    leeway_seconds: Optional[float] = None  # refresh cached tokens this long before expiry; None: the default rule
    header_name: Optional[str] = Field(default=None, max_length=200)
    principal_type: str = Field(default="named", max_length=20)
    refresh_token_policy: Optional[str] = Field(default=None, max_length=50)
    rotation: dict[str, Any] = _json()  # {"every": "90d"} or {"cron": "..."}, "overlap": "24h", "set": ...
    # declared expiries (docs/expiry.md): {"client_secret_expires": "YYYY-MM-DD", "refresh_token_lifetime": s,
    # "refresh_token_idle": s}; only the keys governance.yaml sets
    expiry: dict[str, Any] = _json()
    # RFC 7009 token revocation (govern offboard, docs/offboarding.md); the auth method None: the token endpoint's
    revocation_url: Optional[str] = Field(default=None, max_length=1000)
    revocation_auth_method: Optional[str] = Field(default=None, max_length=50)
    created_at: dt.datetime = _created()
    updated_at: dt.datetime = _created()


class Principal(SQLModel, table=True):
    __tablename__ = "principal"
    __table_args__ = (sa.UniqueConstraint("credential_id", "name", name="uq_principal_credential_name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    credential_id: int = Field(foreign_key="external_credential.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(default="named", max_length=20)  # named | per_user
    integration_user_id: Optional[int] = Field(default=None, foreign_key="integration_user.id", index=True)
    subject: Optional[str] = Field(default=None, max_length=500)  # upstream username (JWT bearer `sub`)
    connected_at: dt.datetime | None = _ts()
    # Set when the upstream refused the stored refresh token (invalid_grant): no upstream call is made for
    # this principal until it is reconnected (govern.broker.upstream.reconnect).
    needs_reconnect_at: dt.datetime | None = _ts()
    created_at: dt.datetime = _created()


class NamedCredential(SQLModel, table=True):
    __tablename__ = "named_credential"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)
    source_file: Optional[str] = Field(default=None, max_length=1000)  # where `govern apply` read it
    source_line: Optional[int] = None
    credential_id: int = Field(foreign_key="external_credential.id", index=True)
    url: str = Field(max_length=1000)
    api_version: Optional[str] = Field(default=None, max_length=50)
    api_type: str = Field(default="REST", max_length=20)
    timeout_seconds: float = 10.0
    retry: dict[str, Any] = _json()  # govern.domain.resilience.RetryPolicy.stored()
    circuit_breaker: dict[str, Any] = _json()  # govern.domain.resilience.BreakerPolicy.stored()
    allowed_methods: list[str] = _json(list)
    allowed_paths: list[str] = _json(list)
    during_maintenance: str = Field(default="refuse", max_length=20)  # refuse | queue
    max_body_bytes: int = 10 * 1024 * 1024
    created_at: dt.datetime = _created()
    updated_at: dt.datetime = _created()


class IntegrationUser(SQLModel, table=True):
    __tablename__ = "integration_user"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)
    source_file: Optional[str] = Field(default=None, max_length=1000)  # where `govern apply` read it
    source_line: Optional[int] = None
    name: str = Field(default="", max_length=300)
    owner: Optional[str] = Field(default=None, max_length=300)
    justification: Optional[str] = Field(default=None, max_length=2000)
    status: str = Field(default="active", max_length=20)  # active | suspended | retired
    review_date: Optional[dt.date] = None
    source_system_id: Optional[int] = Field(default=None, foreign_key="system.id", index=True)
    client_auth_method: str = Field(default="client_secret_basic", max_length=50)
    client_secret_hash: Optional[str] = Field(default=None, max_length=500)
    previous_client_secret_hash: Optional[str] = Field(default=None, max_length=500)
    previous_secret_expires_at: dt.datetime | None = _ts()
    client_secret_set_at: dt.datetime | None = _ts()
    jwks: dict[str, Any] = _json()
    allowed_cidrs: list[str] = _json(list)
    allowed_scopes: list[str] = _json(list)
    rotation: dict[str, Any] = _json()  # the client secret's schedule: {"every": "90d"} or {"cron": ...}, "overlap"
    # auth "federated": the issuers whose tokens stand in for a secret (docs/federation.md)
    trust: Optional[Any] = Field(default=None, sa_column=sa.Column(FederationTrustJSON(), nullable=True))
    last_used_at: dt.datetime | None = _ts()
    created_at: dt.datetime = _created()
    updated_at: dt.datetime = _created()


class PermissionSet(SQLModel, table=True):
    __tablename__ = "permission_set"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)
    source_file: Optional[str] = Field(default=None, max_length=1000)  # where `govern apply` read it
    source_line: Optional[int] = None
    description: str = Field(default="", max_length=2000)
    scopes: list[str] = _json(list)
    api_types: list[str] = _json(list)
    max_token_lifetime_seconds: int = 3600
    allow_budget_overdraft: bool = False
    system_permissions: list[str] = _json(list)  # Salesforce-style user permissions (ApiEnabled, ModifyAllData, ...)
    source: str = Field(default="govern", max_length=50)  # govern | salesforce
    # govern.domain.conditions.AccessConditions (time windows, request rate, source ranges); NULL: none.
    conditions: Optional[dict[str, Any]] = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    created_at: dt.datetime = _created()
    updated_at: dt.datetime = _created()


class PermissionGrant(SQLModel, table=True):
    """One grant of a permission set: access to a named credential (and principal), the methods and
    path patterns allowed, and object/field permissions for Salesforce-style resources."""

    __tablename__ = "permission_grant"
    id: Optional[int] = Field(default=None, primary_key=True)
    permission_set_id: int = Field(foreign_key="permission_set.id", index=True)
    position: int = 0
    named_credential_id: Optional[int] = Field(default=None, foreign_key="named_credential.id", index=True)
    principal: Optional[str] = Field(default=None, max_length=200)
    methods: list[str] = _json(list)
    paths: list[str] = _json(list)
    objects: dict[str, Any] = _json()


class Assignment(SQLModel, table=True):
    __tablename__ = "assignment"
    __table_args__ = (sa.UniqueConstraint("integration_user_id", "permission_set_id", name="uq_assignment"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    integration_user_id: int = Field(foreign_key="integration_user.id", index=True)
    permission_set_id: int = Field(foreign_key="permission_set.id", index=True)
    expires_at: Optional[dt.date] = None
    created_at: dt.datetime = _created()


class AdminUser(SQLModel, table=True):
    __tablename__ = "admin_user"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)  # the username
    password_hash: str = Field(max_length=500)
    role: str = Field(default="auditor", max_length=20)  # admin | operator | auditor
    disabled: bool = False
    failed_attempts: int = 0
    locked_until: dt.datetime | None = _ts()
    last_login_at: dt.datetime | None = _ts()
    created_at: dt.datetime = _created()


class AdminToken(SQLModel, table=True):
    """Bearer tokens for the management API. Only a hash is stored."""

    __tablename__ = "admin_token"
    id: Optional[int] = Field(default=None, primary_key=True)
    admin_user_id: int = Field(foreign_key="admin_user.id", index=True)
    token_hash: str = Field(max_length=128, unique=True, index=True)
    label: str = Field(default="", max_length=200)
    expires_at: dt.datetime | None = _ts()
    created_at: dt.datetime = _created()


class AdminAction(SQLModel, table=True):
    """Who changed what, when, with before and after (never secret values)."""

    __tablename__ = "admin_action"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: dt.datetime = _created()
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    subject_kind: str = Field(max_length=100)
    subject: str = Field(max_length=300)
    before: dict[str, Any] = _json()
    after: dict[str, Any] = _json()
    correlation_id: Optional[str] = Field(default=None, max_length=128)


class Decision(SQLModel, table=True):
    """One broker decision. Append-only and hash-chained: `hash` covers the record and `prev_hash`."""

    __tablename__ = "decision"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))
    correlation_id: str = Field(max_length=128, index=True)
    integration_user: Optional[str] = Field(default=None, max_length=200, index=True)
    action: str = Field(max_length=50)
    named_credential: Optional[str] = Field(default=None, max_length=200, index=True)
    principal: Optional[str] = Field(default=None, max_length=200)
    method: Optional[str] = Field(default=None, max_length=10)
    path: Optional[str] = Field(default=None, max_length=2000)
    resource_object: Optional[str] = Field(default=None, max_length=200)
    api_type: Optional[str] = Field(default=None, max_length=20)
    scopes_requested: list[str] = _json(list)
    scopes_granted: list[str] = _json(list)
    source_ip: Optional[str] = Field(default=None, max_length=64)
    allowed: bool = Field(default=False, index=True)
    rules: list[str] = _json(list)
    upstream_status: Optional[int] = None
    latency_ms: Optional[float] = None
    # allow (allowed and carried out), deny (refused), error (allowed, but the call failed: error_code says why)
    outcome: str = Field(default="deny", max_length=10, index=True)
    error_code: Optional[str] = Field(default=None, max_length=100)
    # The HMAC key of `hash` (decision_log_key.kid); none on records written before the chain was keyed.
    key_id: Optional[str] = Field(default=None, max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class DecisionLogKey(SQLModel, table=True):
    """An HMAC-SHA256 key of the decision chain. The key itself is in the secret store at `secret_path`."""

    __tablename__ = "decision_log_key"
    kid: str = Field(max_length=64, primary_key=True)
    secret_path: str = Field(max_length=300)
    state: str = Field(default="active", max_length=10)  # active | retired (still verifies, signs nothing)
    created_at: dt.datetime = _created()


class DecisionCheckpoint(SQLModel, table=True):
    """A signed statement of the chain's head: record `head_id` (the count: ids are consecutive from 1) had
    hash `head_hash` at `at`. `mac` is HMAC-SHA256 under `key_id`; a deleted tail shows against it."""

    __tablename__ = "decision_checkpoint"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: dt.datetime = _created()
    key_id: str = Field(max_length=64)
    head_id: int = Field(index=True)
    head_hash: str = Field(max_length=64)
    mac: str = Field(max_length=64)


class SecretRef(SQLModel, table=True):
    """Where a secret lives. The value is in the secret store; this row holds only its address."""

    __tablename__ = "secret_ref"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=500, unique=True, index=True)  # e.g. credential/sf-jwt/principal/x/client_secret
    owner_kind: str = Field(max_length=50)  # credential | integration_user | govern
    owner: str = Field(max_length=200, index=True)
    principal: Optional[str] = Field(default=None, max_length=200)
    field: str = Field(max_length=100)
    store: str = Field(default="local", max_length=20)
    mount: Optional[str] = Field(default=None, max_length=200)
    path: str = Field(max_length=500)
    current_version: Optional[int] = None
    rotator: Optional[str] = Field(default=None, max_length=100)
    schedule: Optional[str] = Field(default=None, max_length=100)  # interval ("90d") or cron, UTC
    overlap_seconds: int = 86400
    next_due_at: dt.datetime | None = _ts(index=True)
    set_at: dt.datetime | None = _ts()
    created_at: dt.datetime = _created()


class SecretVersion(SQLModel, table=True):
    __tablename__ = "secret_version"
    __table_args__ = (sa.UniqueConstraint("secret_ref_id", "version", name="uq_secret_version"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    secret_ref_id: int = Field(foreign_key="secret_ref.id", index=True)
    version: int
    stage: str = Field(max_length=20)  # pending | current | previous | revoked
    created_at: dt.datetime = _created()
    expires_at: dt.datetime | None = _ts()


class LocalSecret(SQLModel, table=True):
    """The local store's ciphertexts: AES-256-GCM, the data key wrapped by a master key, bound to the path."""

    __tablename__ = "local_secret"
    __table_args__ = (sa.UniqueConstraint("path", "version", name="uq_local_secret_path_version"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    path: str = Field(max_length=500, index=True)
    version: int
    key_id: str = Field(max_length=64)
    wrapped_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    nonce: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    ciphertext: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    deleted: bool = False
    created_at: dt.datetime = _created()


# Terminal rotation states; every other state is "active", and a secret has at most one active run.
ROTATION_TERMINAL_STATES = ("finished", "parked", "cancelled")
_ACTIVE_RUN = sa.text("state NOT IN ('finished', 'parked', 'cancelled')")


class RotationRun(SQLModel, table=True):
    __tablename__ = "rotation_run"
    __table_args__ = (
        # One active (non-terminal) run per secret, enforced by the database whatever the number of workers.
        sa.Index("uq_rotation_run_active_secret", "secret_ref_id", unique=True,
                 postgresql_where=_ACTIVE_RUN, sqlite_where=_ACTIVE_RUN),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    secret_ref_id: int = Field(foreign_key="secret_ref.id", index=True)
    rotator: str = Field(max_length=100)
    # created|pending|awaiting_confirmation|set|tested|finished|parked|cancelled (govern.rotation.machine)
    state: str = Field(default="created", max_length=30, index=True)
    system_key: Optional[str] = Field(default=None, max_length=300, index=True)  # concurrency cap per system
    dry_run: bool = False
    attempts: int = 0
    pending_version: Optional[int] = None
    next_attempt_at: dt.datetime | None = _ts(index=True)
    claimed_by: Optional[str] = Field(default=None, max_length=200)
    claimed_until: dt.datetime | None = _ts()
    steps: list[dict[str, Any]] = _json(list)
    error: Optional[str] = Field(default=None, max_length=2000)
    started_at: dt.datetime = _created()
    finished_at: dt.datetime | None = _ts()


class AuditRun(SQLModel, table=True):
    __tablename__ = "audit_run"
    id: Optional[int] = Field(default=None, primary_key=True)
    started_at: dt.datetime = _created()
    finished_at: dt.datetime | None = _ts()
    source: str = Field(default="govern", max_length=50)
    counts: dict[str, Any] = _json()
    new: list[str] = _json(list)
    resolved: list[str] = _json(list)
    reopened: list[str] = _json(list)
    sources: list[str] = _json(list, nullable=True)  # the sources this run audited (govern, imported org names)
    # the report document of this run (govern.audit.report.build_report), rendered on demand by `govern audit report`
    report: Optional[dict[str, Any]] = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))


class Finding(SQLModel, table=True):
    __tablename__ = "finding"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=128, unique=True, index=True)  # fingerprint of rule + subject
    rule_id: str = Field(max_length=50, index=True)
    severity: str = Field(max_length=20, index=True)
    subject_kind: str = Field(max_length=50)
    subject: str = Field(max_length=500)
    title: str = Field(max_length=500)
    evidence: dict[str, Any] = _json()
    remediation: str = Field(default="", max_length=4000)
    status: str = Field(default="open", max_length=20, index=True)  # open | resolved | suppressed
    first_seen_at: dt.datetime = _created()
    last_seen_at: dt.datetime = _created()
    resolved_at: dt.datetime | None = _ts()
    last_run_id: Optional[int] = Field(default=None, foreign_key="audit_run.id")
    source: Optional[str] = Field(default=None, max_length=200, index=True)  # govern, or an imported org's name


class SalesforceImport(SQLModel, table=True):
    """An imported Salesforce org (`govern import salesforce DIR --name ORG`): its audit model, kept so that
    every `govern audit` audits it again. The model holds no secret value (govern.audit.model_codec redacts)."""

    __tablename__ = "salesforce_import"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    directory: str = Field(default="", max_length=2000)
    # the directory relative to the working directory of the import, when inside it (a repository checkout):
    # SARIF then points at its files under %SRCROOT%; otherwise under a base named after the org
    root: Optional[str] = Field(default=None, max_length=2000)
    imported_at: dt.datetime = _created()
    files_imported: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    files: list[dict[str, Any]] = _json(list)  # per file: file, kind, status (imported|skipped|error), message
    model: dict[str, Any] = _json()


class Suppression(SQLModel, table=True):
    __tablename__ = "suppression"
    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True, index=True)
    rule_id: str = Field(max_length=50, index=True)
    subject: str = Field(max_length=500)  # exact subject, or a glob
    owner: str = Field(max_length=300)
    justification: str = Field(max_length=4000)
    ticket: str = Field(max_length=200)
    expires_at: dt.date
    created_by: Optional[str] = Field(default=None, max_length=200)
    created_at: dt.datetime = _created()


class SharedState(SQLModel, table=True):
    """govern.cache.Cache in the database, for state that a later request may need in another process
    (connect state, idempotency, breakers, budgets, console lockouts) when no Redis is configured."""

    __tablename__ = "shared_state"
    key: str = Field(sa_column=sa.Column(sa.String(512), primary_key=True))
    value: Optional[bytes] = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    count: Optional[int] = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    expires_at: Optional[float] = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True, index=True))


class SeenClientAssertion(SQLModel, table=True):
    """A private_key_jwt client assertion's `jti`, kept until the assertion expires (RFC 7523 section 3,
    item 7): the unique key makes a second use fail at insert, in every process sharing the database."""

    __tablename__ = "seen_client_assertion"
    key: str = Field(primary_key=True, max_length=64)  # SHA-256 hex of (client id, jti)
    expires_at: dt.datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))


class LandscapeVersion(SQLModel, table=True):
    """The stored landscape version: one row (id 1), written by the migration that creates the table, moved by
    govern.store.landscape_version with every landscape write (which reads and writes it with Core statements)."""

    __tablename__ = "landscape_version"
    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
