"""The `upstream_revocation` queue (govern.ports.RevocationQueue; issue #21, docs/offboarding.md): what govern must
revoke at a provider (RFC 7009), written in the same transaction as the change that calls for it (an apply that
retires or removes a user, a disconnect), and worked by `govern worker`.

A row names where the token lives (the vault secret reference, or the named credentials and scopes of its
token-cache keys), never a token value. Rows go out as govern.domain.revocations.QueuedRevocation values.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import Field, SQLModel, col

from govern.config_as_code.plan import Plan
from govern.domain import revocations as R
from govern.domain.offboarding import OffboardCredential
from govern.errors import NotFound
from govern.logs import current_correlation_id
from govern.store.db import row_id, session_scope
from govern.store.tables import (AdminAction, ExternalCredential, IntegrationUser, NamedCredential, Principal, SecretRef,
                                 utcnow)


class UpstreamRevocation(SQLModel, table=True):
    __tablename__ = "upstream_revocation"
    id: Optional[int] = Field(default=None, primary_key=True)
    credential: str = Field(max_length=200, index=True)
    principal: str = Field(max_length=200)
    integration_user: Optional[str] = Field(default=None, max_length=200)
    token_type: str = Field(max_length=30)  # refresh_token | access_token
    reason: str = Field(max_length=40)
    location: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    status: str = Field(default=R.PENDING, max_length=20, index=True)  # pending | done | skipped | failed
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(
        sa.DateTime(timezone=True), nullable=False, index=True))
    last_status: Optional[int] = None  # the provider's last HTTP status
    detail: str = Field(default="", max_length=500)  # never a token: status codes, error codes, reasons
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    updated_at: Optional[dt.datetime] = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _value(row: UpstreamRevocation) -> R.QueuedRevocation:
    return R.QueuedRevocation(
        id=row_id(row), credential=row.credential, principal=row.principal, token_type=row.token_type,
        reason=row.reason, location=dict(row.location or {}), integration_user=row.integration_user,
        status=row.status, attempts=row.attempts, next_attempt_at=_aware(row.next_attempt_at),
        created_at=_aware(row.created_at) or utcnow(), updated_at=_aware(row.updated_at), detail=row.detail,
        last_status=row.last_status)


# --- what to revoke for a principal (read inside the caller's transaction) ----------------------------------

def principal_requests(session: Session, credential: str, principal: str, reason: str) -> list[R.RevocationRequest]:
    """The items `govern offboard` would revoke for one principal: its cached access tokens, then its stored refresh
    token. Only OAuth refresh-token credentials hold such tokens; for others the list is empty."""
    row = session.execute(sa.select(Principal, ExternalCredential).join(
        ExternalCredential, col(ExternalCredential.id) == col(Principal.credential_id)).where(
        col(ExternalCredential.external_id) == credential, col(Principal.name) == principal)).first()
    if row is None:
        raise NotFound(f"credential {credential!r} has no principal {principal!r}")
    prin, cred = row
    user = session.get(IntegrationUser, prin.integration_user_id) if prin.integration_user_id else None
    named = sorted(session.execute(sa.select(col(NamedCredential.external_id)).where(
        col(NamedCredential.credential_id) == cred.id)).scalars())
    scopes = sorted(set(cred.scopes or ()) | set(user.allowed_scopes or () if user is not None else ()))
    owner = user.external_id if user is not None else None
    out = []
    if named and cred.revocation_url:  # without an endpoint a cached access token just expires
        out.append(R.RevocationRequest(credential, principal, R.ACCESS_TOKEN, reason,
                                       {"named_credentials": named, "scopes": scopes}, owner))
    ref = session.execute(sa.select(SecretRef).where(
        col(SecretRef.owner_kind) == "credential", col(SecretRef.owner) == credential,
        col(SecretRef.principal) == principal, col(SecretRef.field) == "refresh_token")).scalars().first()
    if ref is not None:
        out.append(R.RevocationRequest(credential, principal, R.REFRESH_TOKEN, reason,
                                       {"secret_ref": ref.external_id, "path": ref.path, "version": None,
                                        "forget": True}, owner))
    return out


def enqueue_in(session: Session, requests: Iterable[R.RevocationRequest], now: dt.datetime) -> list[int]:
    rows = [UpstreamRevocation(credential=r.credential, principal=r.principal, integration_user=r.integration_user,
                               token_type=r.token_type, reason=r.reason, location=dict(r.location),
                               next_attempt_at=now, created_at=now) for r in requests]
    session.add_all(rows)
    session.flush()
    return [row_id(r) for r in rows]


def disconnect_in(session: Session, credential: str, principal: str, now: dt.datetime) -> bool:
    """Mark the principal disconnected and needing a reconnect (the broker stops using its refresh token at once).
    Returns whether it was connected."""
    prin = session.execute(sa.select(Principal).join(
        ExternalCredential, col(ExternalCredential.id) == col(Principal.credential_id)).where(
        col(ExternalCredential.external_id) == credential, col(Principal.name) == principal)).scalars().one()
    was = prin.connected_at is not None
    prin.connected_at = None
    if prin.needs_reconnect_at is None:
        prin.needs_reconnect_at = now
    return was


def plan_requests(session: Session, plan: Plan) -> list[R.RevocationRequest]:
    """What an apply plan calls to revoke, read before it is written: the principals of integration users it retires
    or removes, and principals it drops from their credential."""
    retired = {c.id for c in plan.of("update", "integration_user")
               if "status" in c.diff and c.diff["status"][1] == "retired" and c.diff["status"][0] != "retired"}
    removed = {c.id for c in plan.of("delete", "integration_user")}
    dropped: dict[tuple[str, str], str] = {}
    deleted_credentials = {c.id for c in plan.of("delete", "credential")}
    for change in plan.of("update", "credential"):
        if "principals" in change.diff:
            before, after = change.diff["principals"]
            for name in {p["name"] for p in before or ()} - {p["name"] for p in after or ()}:
                dropped[(change.id, name)] = R.PRINCIPAL_REMOVED
    out: list[R.RevocationRequest] = []
    for cred in sorted(deleted_credentials):
        out.extend(_removed_credential(session, cred))
    users = retired | removed
    if users:
        rows = session.execute(sa.select(col(ExternalCredential.external_id), col(Principal.name),
                                         col(IntegrationUser.external_id))
                               .join(Principal, col(Principal.credential_id) == col(ExternalCredential.id))
                               .join(IntegrationUser, col(IntegrationUser.id) == col(Principal.integration_user_id))
                               .where(col(IntegrationUser.external_id).in_(sorted(users)),
                                      col(Principal.kind) == "per_user")).all()
        for cred, name, user in rows:
            if cred not in deleted_credentials:
                dropped[(cred, name)] = R.RETIRED if user in retired else R.USER_REMOVED
    for (cred, name), reason in sorted(dropped.items()):
        out.extend(principal_requests(session, cred, name, reason))
    return out


def _removed_credential(session: Session, credential: str) -> list[R.RevocationRequest]:
    """A pruned credential's principals' tokens, each item carrying the credential's settings (its row goes) and the
    names of its own secrets (client secret, private key), which the worker deletes after the last item."""
    names = session.execute(sa.select(col(Principal.name)).join(
        ExternalCredential, col(ExternalCredential.id) == col(Principal.credential_id)).where(
        col(ExternalCredential.external_id) == credential).order_by(col(Principal.name))).scalars().all()
    requests = [r for name in names for r in principal_requests(session, credential, name, R.CREDENTIAL_REMOVED)]
    if not requests:
        return []
    settings = _credential(session, credential)
    own = sorted(session.execute(sa.select(col(SecretRef.external_id)).where(
        col(SecretRef.owner_kind) == "credential", col(SecretRef.owner) == credential,
        col(SecretRef.field) != "refresh_token")).scalars())
    snapshot = dataclasses.asdict(settings) if settings is not None else {}
    return [dataclasses.replace(r, location={**r.location, "credential": snapshot, "credential_secrets": own})
            for r in requests]


def _credential(session: Session, credential: str) -> OffboardCredential | None:
    cred = session.execute(sa.select(ExternalCredential).where(
        col(ExternalCredential.external_id) == credential)).scalar_one_or_none()
    if cred is None:
        return None
    return OffboardCredential(
        external_id=cred.external_id, protocol=cred.protocol, token_url=cred.token_url,
        client_id=cred.client_id, client_auth_method=cred.client_auth_method,
        revocation_url=cred.revocation_url, revocation_auth_method=cred.revocation_auth_method,
        scopes=tuple(cred.scopes or ()), audience=cred.audience, resource=tuple(cred.resource or ()),
        token_params=dict(cred.token_params or {}), leeway_seconds=cred.leeway_seconds,
        rotation=dict(cred.rotation or {}))


def enqueue_for_plan(session: Session, requests: Sequence[R.RevocationRequest], now: dt.datetime) -> None:
    """In the apply's transaction (before the plan is written): queue an apply's revocations (plan_requests) and
    disconnect the retired users' principals, which stay."""
    staying = {(r.credential, r.principal) for r in requests if r.reason == R.RETIRED}
    for cred, name in sorted(staying):
        disconnect_in(session, cred, name, now)
    enqueue_in(session, requests, now)


def forgotten_refs(requests: Sequence[R.RevocationRequest]) -> set[str]:
    """The secret references the queue deletes once their token is revoked (and a removed credential's own)."""
    return ({r.location["secret_ref"] for r in requests if r.token_type == R.REFRESH_TOKEN and r.location.get("forget")}
            | {name for r in requests for name in r.location.get("credential_secrets", ())})


class RevocationQueueRepo:
    def __init__(self, sessions: sessionmaker[Session], *, row_locks: bool):
        self.sessions = sessions
        self.row_locks = row_locks  # PostgreSQL: claim due items with FOR UPDATE SKIP LOCKED

    def enqueue(self, requests: Sequence[R.RevocationRequest]) -> list[int]:
        with session_scope(self.sessions) as session:
            return enqueue_in(session, requests, utcnow())

    def principal_requests(self, credential: str, principal: str, reason: str) -> list[R.RevocationRequest]:
        with self.sessions() as session:
            return principal_requests(session, credential, principal, reason)

    def disconnect(self, credential: str, principal: str, now: dt.datetime, *,
                   actor: str) -> tuple[bool, list[R.RevocationRequest]]:
        """One transaction: the principal disconnected, its revocations queued, and who did it (an AdminAction).
        (was connected, queued items)"""
        with session_scope(self.sessions) as session:
            requests = principal_requests(session, credential, principal, R.DISCONNECTED)
            was = disconnect_in(session, credential, principal, now)
            enqueue_in(session, requests, now)
            session.add(AdminAction(actor=actor[:200], action="disconnect", subject_kind="principal",
                                    subject=f"{credential}/{principal}"[:300], before={"connected": was},
                                    after={"connected": False, "revocations_queued": [r.token_type for r in requests]},
                                    correlation_id=current_correlation_id()))
            return was, requests

    def connected(self, credential: str, principal: str) -> bool:
        with self.sessions() as session:
            found = session.execute(sa.select(col(Principal.connected_at)).join(
                ExternalCredential, col(ExternalCredential.id) == col(Principal.credential_id)).where(
                col(ExternalCredential.external_id) == credential, col(Principal.name) == principal)).first()
            if found is None:
                raise NotFound(f"credential {credential!r} has no principal {principal!r}")
            return found[0] is not None

    def claim_due(self, now: dt.datetime, limit: int, lease_seconds: float) -> list[R.QueuedRevocation]:
        """Due pending items, oldest first; each is not due again for `lease_seconds` (so two workers never take
        the same item, and one that died mid-item leaves it to a later pass)."""
        with session_scope(self.sessions) as session:
            query = (sa.select(UpstreamRevocation).where(col(UpstreamRevocation.status) == R.PENDING,
                                                         col(UpstreamRevocation.next_attempt_at) <= now)
                     .order_by(col(UpstreamRevocation.next_attempt_at), col(UpstreamRevocation.id)).limit(limit))
            if self.row_locks:
                query = query.with_for_update(skip_locked=True)
            rows = list(session.execute(query).scalars().all())
            for row in rows:
                row.next_attempt_at = now + dt.timedelta(seconds=lease_seconds)
            session.flush()
            return [_value(r) for r in rows]

    def finish(self, item_id: int, *, status: str, attempts: int, detail: str, last_status: int | None,
               next_attempt_at: dt.datetime | None, now: dt.datetime) -> None:
        with session_scope(self.sessions) as session:
            row = session.get_one(UpstreamRevocation, item_id)
            row.status, row.attempts, row.detail, row.last_status = status, attempts, detail[:500], last_status
            row.updated_at = now
            if next_attempt_at is not None:
                row.next_attempt_at = next_attempt_at

    def counts(self) -> dict[str, int]:
        with self.sessions() as session:
            rows = session.execute(sa.select(col(UpstreamRevocation.status), sa.func.count())
                                   .group_by(col(UpstreamRevocation.status))).all()
        return {R.PENDING: 0, R.FAILED: 0, **{status: int(n) for status, n in rows}}

    def listing(self, *, finished_since: dt.datetime | None = None, limit: int = 200) -> list[R.QueuedRevocation]:
        """Pending and failed items, and those done or skipped since `finished_since`; newest first."""
        with self.sessions() as session:
            recent: sa.ColumnElement[bool] = col(UpstreamRevocation.status).in_([R.PENDING, R.FAILED])
            if finished_since is not None:
                recent = sa.or_(recent, col(UpstreamRevocation.updated_at) >= finished_since)
            rows = session.execute(sa.select(UpstreamRevocation).where(recent)
                                   .order_by(col(UpstreamRevocation.id).desc()).limit(limit)).scalars().all()
            return [_value(r) for r in rows]

    def retry_failed(self, now: dt.datetime) -> int:
        """Failed items pending again, due now, their attempts counted afresh."""
        with session_scope(self.sessions) as session:
            rows = session.execute(sa.select(UpstreamRevocation).where(
                col(UpstreamRevocation.status) == R.FAILED)).scalars().all()
            for row in rows:
                row.status, row.attempts, row.next_attempt_at, row.updated_at = R.PENDING, 0, now, now
            return len(rows)

    def credential(self, credential: str) -> OffboardCredential | None:
        with self.sessions() as session:
            return _credential(session, credential)

    def unfinished(self, credential: str, reason: str) -> int:
        """Pending or failed items of the credential queued for `reason`."""
        with self.sessions() as session:
            return int(session.execute(sa.select(sa.func.count()).select_from(UpstreamRevocation).where(
                col(UpstreamRevocation.credential) == credential, col(UpstreamRevocation.reason) == reason,
                col(UpstreamRevocation.status).in_([R.PENDING, R.FAILED]))).scalar_one())

    def principal(self, credential: str, principal: str) -> tuple[int, str | None, dt.datetime | None] | None:
        """(row id, subject, connected_at) of a principal that still exists."""
        with self.sessions() as session:
            found = session.execute(sa.select(col(Principal.id), col(Principal.subject), col(Principal.connected_at))
                                    .join(ExternalCredential, col(ExternalCredential.id) == col(Principal.credential_id))
                                    .where(col(ExternalCredential.external_id) == credential,
                                           col(Principal.name) == principal)).first()
            return (found[0] or 0, found[1], _aware(found[2])) if found is not None else None
