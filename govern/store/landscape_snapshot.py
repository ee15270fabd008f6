"""The rows the one landscape snapshot is built from (govern.broker.landscape), read as typed values.

One session, one query per table, only the columns the snapshot uses, read with SQLAlchemy Core (no ORM
objects): at the 100x volume of bench/apply.py (10,000 users, 15,000 assignments, 2,000 named credentials)
loading ORM objects was most of a rebuild. The stored landscape version is read first, in the same session,
so the rows are never older than the version they are labelled with.

JSON columns are read as text and validated with pydantic (TypeAdapter) into value objects: retry and breaker
settings (govern.domain.resilience), maintenance windows, token-request parameters, a grant's object
permissions, lists of scopes, methods, paths and ranges. Many rows hold the same text (`[]`, the same retry
settings), so each distinct text is parsed once per load and the frozen value is shared. A stored value that
does not parse is not replaced by a default: the row is left out and its error is returned in
`LandscapeRecords.errors`, naming the entity, for the snapshot to report and to raise to the calls that need it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Annotated, Any, Optional

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from govern.config_as_code.schema import ObjectPermissions
from govern.domain.conditions import AccessConditions
from govern.domain.maintenance import MaintenanceWindow
from govern.domain.resilience import BreakerPolicy, RetryPolicy, Seconds
from govern.domain.token_request import TokenRequestParams
from govern.errors import ConfigurationError, GovernError
from govern.store import landscape_version
from govern.store.tables import (Assignment, ExternalCredential, IntegrationUser, NamedCredential, PermissionGrant,
                                 PermissionSet, Principal, System)


class LandscapeUnavailable(GovernError):
    code = "landscape_unavailable"
    status = 503
    title = "govern cannot read its landscape"
    cause = ""  # the database error's type name


# --- the stored JSON, typed ----------------------------------------------------------------------------------

class _Stored(BaseModel):
    """Stored JSON of which the snapshot reads some keys; the other keys belong to other readers (the contract's
    schema links, a rotation's schedule), so they are ignored here rather than refused."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class StoredContract(_Stored):
    max_concurrent_calls: Optional[Annotated[int, Field(ge=1, le=10_000)]] = None


class StoredRotation(_Stored):
    overlap: Optional[Seconds] = None


Texts = tuple[str, ...]
_TEXTS: TypeAdapter[Texts] = TypeAdapter(Texts)
_WINDOWS: TypeAdapter[tuple[MaintenanceWindow, ...]] = TypeAdapter(tuple[MaintenanceWindow, ...])
_CONTRACT: TypeAdapter[StoredContract] = TypeAdapter(StoredContract)
_ROTATION: TypeAdapter[StoredRotation] = TypeAdapter(StoredRotation)
_PARAMS: TypeAdapter[dict[str, str]] = TypeAdapter(dict[str, str])
_RETRY: TypeAdapter[RetryPolicy] = TypeAdapter(RetryPolicy)
_BREAKER: TypeAdapter[BreakerPolicy] = TypeAdapter(BreakerPolicy)
_OBJECTS: TypeAdapter[dict[str, ObjectPermissions]] = TypeAdapter(dict[str, ObjectPermissions])
_CONDITIONS: TypeAdapter[AccessConditions | None] = TypeAdapter(AccessConditions | None)
# a NULL column is the empty value: [] for lists, no conditions, {} otherwise
_EMPTY = {id(_TEXTS): "[]", id(_WINDOWS): "[]", id(_CONDITIONS): "null"}
_MISSING = object()


# --- the records -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SystemRecord:
    id: int
    external_id: str
    daily_api_budget: int | None
    maintenance_windows: tuple[MaintenanceWindow, ...]
    max_concurrent_calls: int | None
    rate_limit_per_minute: int | None = None  # the contract's calls per minute to the system, across govern


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    id: int
    external_id: str
    system_id: int
    protocol: str
    token_url: str | None
    client_id: str | None
    client_auth_method: str | None
    header_name: str | None
    principal_type: str
    params: TokenRequestParams  # scopes, audience, RFC 8707 resources, extra token-request parameters
    leeway: float | None
    rotation_overlap: float | None


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    id: int
    credential_id: int
    name: str
    kind: str  # named | per_user
    integration_user_id: int | None
    subject: str | None
    # Disconnected, or its refresh token refused upstream (Principal.needs_reconnect_at): no token for it at all,
    # not even one govern still has cached (govern.broker.upstream.service.UpstreamTokens.get_token).
    needs_reconnect: bool = False


@dataclass(frozen=True, slots=True)
class NamedCredentialRecord:
    id: int
    external_id: str
    credential_id: int
    url: str
    api_type: str
    timeout: float
    retry: RetryPolicy
    breaker: BreakerPolicy
    allowed_methods: Texts
    allowed_paths: Texts
    during_maintenance: str
    max_body_bytes: int


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    external_id: str
    status: str
    cidrs: Texts
    allowed_scopes: Texts


@dataclass(frozen=True, slots=True)
class PermissionSetRecord:
    id: int
    external_id: str
    scopes: Texts
    api_types: Texts
    max_token_lifetime_seconds: int
    system_permissions: Texts
    allow_budget_overdraft: bool
    conditions: AccessConditions | None = None  # when, how often and from where its grants hold


@dataclass(frozen=True, slots=True)
class GrantRecord:
    permission_set_id: int
    named_credential_id: int | None
    principal: str | None
    methods: Texts
    paths: Texts
    objects: dict[str, dict[str, Any]]  # object name -> ObjectPermissions, validated, as the decider reads it


@dataclass(frozen=True, slots=True)
class AssignmentRecord:
    integration_user_id: int
    permission_set_id: int
    expires_at: dt.date | None


@dataclass(frozen=True, slots=True)
class RecordError:
    """A stored row whose settings do not parse. `kind` is the table's entity (system, credential,
    named_credential, integration_user, permission_set); a grant's error is its permission set's."""

    kind: str
    id: int
    external_id: str
    error: ConfigurationError


@dataclass
class LandscapeRecords:
    version: int  # the stored landscape version, read before the rows
    systems: list[SystemRecord] = field(default_factory=list)
    credentials: list[CredentialRecord] = field(default_factory=list)
    principals: list[PrincipalRecord] = field(default_factory=list)
    named_credentials: list[NamedCredentialRecord] = field(default_factory=list)
    users: list[UserRecord] = field(default_factory=list)
    permission_sets: list[PermissionSetRecord] = field(default_factory=list)
    grants: list[GrantRecord] = field(default_factory=list)  # in the permission set's order (position, id)
    assignments: list[AssignmentRecord] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


# --- the queries ------------------------------------------------------------------------------------------------

def _t(model: Any) -> sa.Table:
    return model.__table__


def _json(column: sa.Column) -> sa.ColumnElement[Any]:
    """A JSON column as its stored text: parsed once per distinct text by _Parser, not once per row."""
    return sa.cast(column, sa.Text)


_S, _C, _P, _N = _t(System).c, _t(ExternalCredential).c, _t(Principal).c, _t(NamedCredential).c
_U, _PS, _G, _A = _t(IntegrationUser).c, _t(PermissionSet).c, _t(PermissionGrant).c, _t(Assignment).c
SYSTEMS = sa.select(_S.id, _S.external_id, _S.daily_api_budget, _json(_S.maintenance_windows), _json(_S.contract),
                    _S.rate_limit_per_minute)
CREDENTIALS = sa.select(_C.id, _C.external_id, _C.system_id, _C.protocol, _C.token_url, _C.client_id,
                        _C.client_auth_method, _C.header_name, _C.principal_type, _json(_C.scopes), _C.audience,
                        _json(_C.resource), _json(_C.token_params), _C.leeway_seconds, _json(_C.rotation))
PRINCIPALS = sa.select(_P.id, _P.credential_id, _P.name, _P.kind, _P.integration_user_id, _P.subject,
                       _P.needs_reconnect_at.is_not(None)).order_by(_P.id)
NAMED_CREDENTIALS = sa.select(_N.id, _N.external_id, _N.credential_id, _N.url, _N.api_type, _N.timeout_seconds,
                              _json(_N.retry), _json(_N.circuit_breaker), _json(_N.allowed_methods),
                              _json(_N.allowed_paths), _N.during_maintenance, _N.max_body_bytes)
USERS = sa.select(_U.id, _U.external_id, _U.status, _json(_U.allowed_cidrs), _json(_U.allowed_scopes))
PERMISSION_SETS = sa.select(_PS.id, _PS.external_id, _json(_PS.scopes), _json(_PS.api_types),
                            _PS.max_token_lifetime_seconds, _json(_PS.system_permissions), _PS.allow_budget_overdraft,
                            _json(_PS.conditions))
GRANTS = sa.select(_G.permission_set_id, _G.named_credential_id, _G.principal, _json(_G.methods), _json(_G.paths),
                   _json(_G.objects)).order_by(_G.position, _G.id)
ASSIGNMENTS = sa.select(_A.integration_user_id, _A.permission_set_id, _A.expires_at).order_by(_A.id)


class _Unreadable(Exception):
    def __init__(self, error: ConfigurationError):
        self.error = error


class _Parser:
    """Parses stored JSON text with a TypeAdapter, once per distinct (adapter, text) in one load."""

    def __init__(self) -> None:
        self._memos: dict[int, dict[str, Any]] = {}

    def __call__(self, adapter: TypeAdapter[Any], text: str | None, where: str) -> Any:
        memo = self._memos.get(id(adapter))
        if memo is None:
            memo = self._memos[id(adapter)] = {}
        found = memo.get(text, _MISSING)  # type: ignore[arg-type]
        if found is not _MISSING:
            return found
        raw = _EMPTY.get(id(adapter), "{}") if text is None or text == "null" else text
        try:
            value = memo[text] = adapter.validate_json(raw)  # type: ignore[index]
        except ValidationError as exc:
            raise _Unreadable(ConfigurationError(f"{where} holds stored settings govern cannot read "
                                                 f"({_problems(exc)}); apply the governance file again")) from None
        return value


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(value)'}: {e['msg']}" for e in exc.errors())


def read(connection: sa.Connection, version: int) -> LandscapeRecords:
    """Every row the snapshot holds, labelled with `version`, read before them on the same connection."""
    out = LandscapeRecords(version=version)
    parse = _Parser()

    def run(statement: sa.Select[Any]) -> Sequence[Any]:
        return connection.execute(statement).all()  # one fetch per table, not one per row

    def failed(kind: str, row_id: int, external_id: str, problem: _Unreadable) -> None:
        out.errors.append(RecordError(kind, row_id, external_id, problem.error))

    for i, ext, budget, windows, contract, per_minute in run(SYSTEMS):
        try:
            out.systems.append(SystemRecord(
                i, ext, budget, parse(_WINDOWS, windows, f"system {ext}: maintenance_windows"),
                parse(_CONTRACT, contract, f"system {ext}: contract").max_concurrent_calls, per_minute or None))
        except _Unreadable as problem:
            failed("system", i, ext, problem)
    for (i, ext, system_id, protocol, token_url, client_id, auth, header, principal_type, scopes, audience, resource,
         extra, leeway, rotation) in run(CREDENTIALS):
        where = f"credential {ext}"
        try:
            params = TokenRequestParams(scopes=parse(_TEXTS, scopes, f"{where}: scopes"), audience=audience,
                                        resource=parse(_TEXTS, resource, f"{where}: resource"),
                                        extra=parse(_PARAMS, extra, f"{where}: token_params"))
            out.credentials.append(CredentialRecord(
                i, ext, system_id, protocol, token_url, client_id, auth, header, principal_type or "named", params,
                leeway, parse(_ROTATION, rotation, f"{where}: rotation").overlap))
        except ValidationError as exc:  # the parameters together (a secret-looking or reserved token parameter)
            failed("credential", i, ext, _Unreadable(ConfigurationError(
                f"{where}: token request parameters hold stored settings govern cannot read ({_problems(exc)}); "
                "apply the governance file again")))
        except _Unreadable as problem:
            failed("credential", i, ext, problem)
    out.principals = [PrincipalRecord(i, cred, name, kind, user, subject, bool(reconnect))
                      for i, cred, name, kind, user, subject, reconnect in run(PRINCIPALS)]
    for (i, ext, cred, url, api_type, timeout, retry, breaker, methods, paths, during,
         max_body) in run(NAMED_CREDENTIALS):
        where = f"named credential {ext}"
        try:
            out.named_credentials.append(NamedCredentialRecord(
                i, ext, cred, url, api_type or "REST", float(timeout if timeout is not None else 10.0),
                parse(_RETRY, retry, f"{where}: retry"), parse(_BREAKER, breaker, f"{where}: circuit_breaker"),
                tuple(m.upper() for m in parse(_TEXTS, methods, f"{where}: methods")),
                parse(_TEXTS, paths, f"{where}: paths"), during, int(max_body)))
        except _Unreadable as problem:
            failed("named_credential", i, ext, problem)
    for i, ext, status, cidrs, scopes in run(USERS):
        where = f"integration user {ext}"
        try:
            out.users.append(UserRecord(i, ext, status, parse(_TEXTS, cidrs, f"{where}: ip_ranges"),
                                        parse(_TEXTS, scopes, f"{where}: scopes")))
        except _Unreadable as problem:
            failed("integration_user", i, ext, problem)
    names: dict[int, str] = {}
    for i, ext, scopes, api_types, lifetime, permissions, overdraft, conditions in run(PERMISSION_SETS):
        names[i] = ext
        where = f"permission set {ext}"
        try:
            out.permission_sets.append(PermissionSetRecord(
                i, ext, parse(_TEXTS, scopes, f"{where}: scopes"), parse(_TEXTS, api_types, f"{where}: api_types"),
                int(lifetime), parse(_TEXTS, permissions, f"{where}: system_permissions"), bool(overdraft),
                parse(_CONDITIONS, conditions, f"{where}: conditions")))
        except _Unreadable as problem:
            failed("permission_set", i, ext, problem)
    for ps, nc, principal, methods, paths, objects in run(GRANTS):
        where = f"permission set {names.get(ps, ps)}: grant"
        try:
            perms = parse(_OBJECTS, objects, f"{where}: objects")
            out.grants.append(GrantRecord(
                ps, nc, principal, tuple(m.upper() for m in parse(_TEXTS, methods, f"{where}: methods")),
                parse(_TEXTS, paths, f"{where}: paths"),
                {name: p.model_dump() for name, p in perms.items()} if perms else {}))
        except _Unreadable as problem:
            failed("permission_set", ps, names.get(ps, str(ps)), problem)
    out.assignments = [AssignmentRecord(user, ps, expires) for user, ps, expires in run(ASSIGNMENTS)]
    return out


class LandscapeSnapshots:
    """The repository the snapshot reads through: the stored version, and every row when it has moved.
    A database that cannot be read raises LandscapeUnavailable (the SQLAlchemy error is not passed on)."""

    def __init__(self, sessions: sessionmaker[Session]):
        self._sessions = sessions

    @staticmethod
    def local_commits() -> int:
        """Landscape commits made by this process so far (govern.store.landscape_version.local_commits)."""
        return landscape_version.local_commits()

    def load(self, known_version: int | None) -> tuple[int, LandscapeRecords | None]:
        """The stored version, and the rows when it differs from `known_version` (None: always)."""
        try:
            with self._sessions() as s:
                connection = s.connection()
                version = landscape_version.read_version(connection)
                if version == known_version:
                    return version, None
                return version, read(connection, version)
        except sa.exc.SQLAlchemyError as exc:
            unavailable = LandscapeUnavailable("the landscape cannot be read from the database")
            unavailable.cause = type(exc).__name__  # for the log line; the driver's text may quote the query
            raise unavailable from None
