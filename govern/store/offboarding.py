"""What `govern offboard` reads and changes in the store (govern.broker.upstream.revocation uses it through
govern.ports.OffboardRecords): an integration user's per-user principals with their credentials, retiring the
user, disconnecting a principal, and the name of a principal's stored refresh token."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.domain.offboarding import OffboardCredential, OffboardPrincipal, OffboardUser
from govern.errors import NotFound
from govern.store.credential_secret_refs import CredentialSecretRefRepo
from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, IntegrationUser, NamedCredential, Principal


class OffboardRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def user(self, user: str) -> OffboardUser:
        """Raise NotFound when there is no such integration user."""
        with self.sessions() as session:
            row = session.execute(sa.select(IntegrationUser).where(
                col(IntegrationUser.external_id) == user)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no integration user {user!r}")
            found = []
            for prin, cred in session.execute(
                    sa.select(Principal, ExternalCredential).join(
                        ExternalCredential, col(ExternalCredential.id) == col(Principal.credential_id))
                    .where(col(Principal.integration_user_id) == row.id, col(Principal.kind) == "per_user")
                    .order_by(col(ExternalCredential.external_id), col(Principal.name))):
                named = tuple(session.execute(sa.select(col(NamedCredential.external_id)).where(
                    col(NamedCredential.credential_id) == cred.id).order_by(col(NamedCredential.external_id))).scalars())
                found.append(OffboardPrincipal(
                    id=prin.id or 0, name=prin.name, subject=prin.subject, connected=prin.connected_at is not None,
                    named_credentials=named,
                    credential=OffboardCredential(
                        external_id=cred.external_id, protocol=cred.protocol, token_url=cred.token_url,
                        client_id=cred.client_id, client_auth_method=cred.client_auth_method,
                        revocation_url=cred.revocation_url, revocation_auth_method=cred.revocation_auth_method,
                        scopes=tuple(cred.scopes or ()), audience=cred.audience, resource=tuple(cred.resource or ()),
                        token_params=dict(cred.token_params or {}), leeway_seconds=cred.leeway_seconds,
                        rotation=dict(cred.rotation or {}))))
            return OffboardUser(id=row.id or 0, external_id=row.external_id, status=row.status,
                                allowed_scopes=tuple(row.allowed_scopes or ()), principals=tuple(found))

    def retire(self, user_id: int, now: dt.datetime) -> str:
        """Set the user retired; returns the status it had."""
        with session_scope(self.sessions) as session:
            stored = session.get_one(IntegrationUser, user_id)
            before = stored.status
            stored.status = "retired"
            stored.updated_at = now
            return before

    def disconnect(self, principal_id: int) -> None:
        with session_scope(self.sessions) as session:
            session.get_one(Principal, principal_id).connected_at = None

    def refresh_token_ref(self, credential: str, principal: str) -> str | None:
        """The name of the principal's stored refresh token's secret reference, if one exists."""
        with self.sessions() as session:
            ref = CredentialSecretRefRepo._ref(session, credential, principal, "refresh_token")
            return ref.external_id if ref is not None else None
