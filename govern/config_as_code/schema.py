"""The governance.yaml v1 schema (docs/governance-schema.md) as pydantic models.

Each model checks one entity's shape and the rules that need only that entity (types, enums, CIDRs,
durations, protocol-dependent fields). Rules that span entities (references, duplicates, scopes)
live in `validate.py`. Every model forbids unknown keys.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from croniter import croniter

from govern.config_as_code.units import parse_duration, parse_size
from govern.domain.federation import FederationTrust
from govern.domain.maintenance import HHMM, MaintenanceWindow  # noqa: F401 - one shape, YAML to runtime
from govern.domain.conditions import AccessConditions, TimeWindow  # noqa: F401 - one shape, YAML to runtime
from govern.domain.resilience import BreakerPolicy, RetryPolicy
from govern.domain.token_request import ExtraParams, Resources

API_VERSION = "govern/v1"
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,199}$"
PROTOCOLS = ("oauth2_client_credentials", "oauth2_refresh_token", "oauth2_jwt_bearer", "basic",
             "api_key_header", "custom_header")
OAUTH2 = frozenset(p for p in PROTOCOLS if p.startswith("oauth2_"))
HEADER_PROTOCOLS = frozenset({"api_key_header", "custom_header"})
API_TYPES = ("REST", "SOAP", "Bulk", "Streaming")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# JWK members that only private (or symmetric) keys carry: RFC 7518 sections 6.2.2, 6.3.2 and 6.4.1.
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Scope = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]


def _duration(value: Any) -> float:
    return parse_duration(value)


def _cidr(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a CIDR such as 10.20.0.0/16")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError:
        try:
            loose = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not a CIDR (expected e.g. 10.20.0.0/16)") from None
        raise ValueError(f"{value!r} has host bits set; did you mean {loose}?") from None


def _str_keys(value: Any) -> Any:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a valid cron expression")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
Cidr = Annotated[str, BeforeValidator(_cidr)]
Method = Annotated[str, AfterValidator(lambda m: _enum(m.upper(), METHODS, "method"))]


def _enum(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Contract(Strict):
    owner: Optional[str] = None
    escalation: Optional[str] = None
    sla: dict[str, Any] = Field(default_factory=dict)
    rate_limit_per_minute: Optional[Annotated[int, Field(ge=0)]] = None
    daily_api_budget: Optional[Annotated[int, Field(ge=0)]] = None
    # The proxy's bulkhead for this system: concurrent upstream calls per govern process.
    max_concurrent_calls: Optional[Annotated[int, Field(ge=1, le=10000)]] = None
    api_version_policy: Optional[str] = None
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    runbook: Optional[str] = None
    schema_links: list[str] = Field(default_factory=list)
    error_codes: Annotated[dict[str, str], BeforeValidator(_str_keys)] = Field(default_factory=dict)


class SystemDoc(Strict):
    id: Id
    name: Optional[str] = None
    kind: str = "generic"
    description: str = ""
    scopes: list[Scope] = Field(default_factory=list)
    contract: Contract = Field(default_factory=Contract)


class PrincipalDoc(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    subject: Optional[str] = None
    user: Optional[Id] = None


class Rotation(Strict):
    every: Optional[Duration] = None
    cron: Optional[Annotated[str, AfterValidator(_cron)]] = None
    overlap: Optional[Duration] = None

    @model_validator(mode="after")
    def _one_schedule(self):
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of `every` or `cron`")
        return self


class CredentialDoc(Strict):
    id: Id
    system: Id
    protocol: Literal[PROTOCOLS]  # type: ignore[valid-type]
    token_url: Optional[str] = None
    authorize_url: Optional[str] = None
    client_id: Optional[str] = None
    client_auth: Optional[Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]] = None
    scopes: list[Scope] = Field(default_factory=list)
    audience: Optional[str] = None
    resource: Resources = ()  # RFC 8707 resource indicators, each sent as a `resource` form parameter
    token_params: ExtraParams = Field(default_factory=dict)  # further token-request form parameters, no secrets
    leeway: Optional[Duration] = None  # refresh a cached token this long before it expires (default: see docs)
    header: Optional[str] = None
    principal_type: Literal["named", "per_user"] = "named"
    principals: list[PrincipalDoc] = Field(default_factory=list)
    refresh_token_policy: Optional[str] = None
    rotation: Optional[Rotation] = None
    # Expiry forecasting (docs/expiry.md): the day the provider's client secret stops working, and the
    # refresh tokens' absolute lifetime (from issue) and idle lifetime (from last use).
    client_secret_expires: Optional[dt.date] = None
    refresh_token_lifetime: Optional[Annotated[Duration, Field(gt=0)]] = None
    refresh_token_idle: Optional[Annotated[Duration, Field(gt=0)]] = None

    @model_validator(mode="after")
    def _refresh_token_lifetimes_need_refresh_tokens(self):
        used = [name for name in ("refresh_token_lifetime", "refresh_token_idle") if getattr(self, name) is not None]
        if used and self.protocol != "oauth2_refresh_token":
            raise ValueError(f"{', '.join(used)} describe refresh tokens; protocol {self.protocol} holds none")
        return self
    # RFC 7009: where `govern offboard` revokes the tokens govern holds, and the client authentication it uses there
    # (default: client_auth, the token endpoint's)
    revocation_endpoint: Optional[Annotated[str, Field(pattern=r"^https?://\S+$")]] = None
    revocation_client_auth: Optional[Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]] = None

    @model_validator(mode="after")
    def _token_request_fields_need_oauth(self):
        used = [name for name in ("resource", "token_params", "leeway", "revocation_endpoint", "revocation_client_auth")
                if getattr(self, name)]
        if used and self.protocol not in OAUTH2:
            raise ValueError(f"{', '.join(used)} apply to OAuth 2.0 token requests; protocol {self.protocol} has none")
        return self


# The runtime's own value objects (govern.domain.resilience): the YAML keys are the keys the proxy reads.
Retry = RetryPolicy
CircuitBreaker = BreakerPolicy


class NamedCredentialDoc(Strict):
    id: Id
    credential: Id
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    api_version: Optional[str] = None
    api_type: Literal[API_TYPES] = "REST"  # type: ignore[valid-type]
    timeout: Duration = 10.0
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit_breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    methods: list[Method] = Field(default_factory=list)
    paths: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    during_maintenance: Literal["refuse", "queue"] = "refuse"
    max_body: Annotated[int, BeforeValidator(parse_size)] = 10 * 1024 * 1024


class AssignmentDoc(Strict):
    permission_set: Id
    until: Optional[dt.date] = None


class IntegrationUserDoc(Strict):
    id: Id
    name: Optional[str] = None
    owner: Optional[str] = None
    justification: Optional[str] = None
    status: Literal["active", "suspended", "retired"] = "active"
    review_date: Optional[dt.date] = None
    source_system: Optional[Id] = None
    auth: Literal["client_secret_basic", "private_key_jwt", "federated"] = "client_secret_basic"
    jwks: dict[str, Any] = Field(default_factory=dict)
    # Workload identity federation (docs/federation.md): tokens of a trusted issuer instead of a secret.
    trust: Optional[FederationTrust] = None
    ip_ranges: list[Cidr] = Field(default_factory=list)
    scopes: list[Scope] = Field(default_factory=list)
    permission_sets: list[AssignmentDoc] = Field(default_factory=list)  # a bare id is read as {permission_set: id}
    # The schedule of the user's govern client secret (rotated by govern; both valid during the overlap).
    rotation: Optional[Rotation] = None

    @model_validator(mode="before")
    @classmethod
    def _trust_means_federated(cls, data: Any) -> Any:
        # `trust:` is declared instead of a client secret: it implies `auth: federated` unless auth is given.
        if isinstance(data, dict) and data.get("trust") is not None and "auth" not in data:
            return {**data, "auth": "federated"}
        return data

    @model_validator(mode="after")
    def _trust_and_federated_go_together(self):
        if self.auth == "federated" and self.trust is None:
            raise ValueError("`auth: federated` needs `trust:` (the issuers whose tokens this user accepts)")
        if self.trust is not None and self.auth != "federated":
            raise ValueError(f"`trust:` replaces a client secret or key; it cannot go with auth: {self.auth}")
        return self

    @model_validator(mode="after")
    def _rotation_needs_a_client_secret(self):
        if self.rotation is not None and self.auth != "client_secret_basic":
            raise ValueError("`rotation` schedules a client secret; a private_key_jwt user's key is its own")
        return self


ObjectAccess = Literal["read", "edit", "none"]


class ObjectPermissions(Strict):
    read: bool = False
    create: bool = False
    edit: bool = False
    delete: bool = False
    view_all: bool = False
    modify_all: bool = False
    fields: dict[str, ObjectAccess] = Field(default_factory=dict)


class GrantDoc(Strict):
    named_credential: Id
    principal: Optional[str] = None
    methods: list[Method] = Field(default_factory=list)
    paths: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    objects: dict[str, ObjectPermissions] = Field(default_factory=dict)


class PermissionSetDoc(Strict):
    id: Id
    description: str = ""
    scopes: list[Scope] = Field(default_factory=list)
    api_types: list[Literal[API_TYPES]] = Field(default_factory=list)  # type: ignore[valid-type]
    max_token_lifetime: Duration = 3600
    overdraft: bool = False
    system_permissions: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    grants: list[GrantDoc] = Field(default_factory=list)
    # When, how often and from where the grants hold (docs/access-conditions.md).
    conditions: Optional[AccessConditions] = None


SECTIONS: dict[str, type[Strict]] = {
    "systems": SystemDoc,
    "credentials": CredentialDoc,
    "named_credentials": NamedCredentialDoc,
    "integration_users": IntegrationUserDoc,
    "permission_sets": PermissionSetDoc,
}
TOP_LEVEL = ("apiVersion", "kind", *SECTIONS)
