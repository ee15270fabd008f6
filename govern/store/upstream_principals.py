"""Principals of external credentials as the upstream token broker and the connect flow use them
(govern.ports.UpstreamPrincipals): the connect flow's view of a credential and principal, `connected_at`,
and the `needs_reconnect_at` mark (govern.broker.upstream.reconnect).

Both mark changes are conditional UPDATEs, so of many processes that see the same refusal (or the same
reconnect) exactly one wins.
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from govern.errors import NotFound
from govern.ports import ConnectSubject
from govern.store.db import row_id, rows_matched, session_scope
from govern.store.tables import ExternalCredential, IntegrationUser, Principal


class PrincipalRepo:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def connect_subject(self, credential: str, principal: str) -> ConnectSubject:
        with self.sessions() as session:
            cred = session.execute(sa.select(ExternalCredential).where(
                col(ExternalCredential.external_id) == credential)).scalar_one_or_none()
            if cred is None:
                raise NotFound(f"no credential {credential!r}")
            prin = session.execute(sa.select(Principal).where(
                col(Principal.credential_id) == cred.id, col(Principal.name) == principal)).scalar_one_or_none()
            if prin is None:
                raise NotFound(f"credential {credential!r} has no principal {principal!r}")
            return ConnectSubject(
                credential=cred.external_id, protocol=cred.protocol, token_url=cred.token_url,
                client_id=cred.client_id, client_auth_method=cred.client_auth_method,
                authorize_url=cred.authorize_url, scopes=tuple(cred.scopes or ()), audience=cred.audience,
                resource=tuple(cred.resource or ()), token_params=dict(cred.token_params or {}),
                leeway_seconds=cred.leeway_seconds, rotation=dict(cred.rotation or {}),
                principal=prin.name, principal_id=row_id(prin), subject=prin.subject)

    def mark_connected(self, principal_id: int, now: dt.datetime) -> str | None:
        with session_scope(self.sessions) as session:
            row = session.get_one(Principal, principal_id)
            row.connected_at = now
            user = session.get(IntegrationUser, row.integration_user_id) if row.integration_user_id else None
            return user.external_id if user is not None else None

    def needs_reconnect_since(self, principal_id: int) -> dt.datetime | None:
        with self.sessions() as session:
            return session.execute(sa.select(col(Principal.needs_reconnect_at))
                                   .where(col(Principal.id) == principal_id)).scalar()

    def mark_needs_reconnect(self, principal_id: int, now: dt.datetime) -> bool:
        with session_scope(self.sessions) as session:
            return rows_matched(session.execute(sa.update(Principal).where(
                col(Principal.id) == principal_id, col(Principal.needs_reconnect_at).is_(None))
                .values(needs_reconnect_at=now).execution_options(synchronize_session=False))) == 1

    def clear_needs_reconnect(self, credential: str, principal: str) -> tuple[bool, dt.datetime | None]:
        with session_scope(self.sessions) as session:
            cred_id = session.execute(sa.select(col(ExternalCredential.id)).where(
                col(ExternalCredential.external_id) == credential)).scalar()
            if cred_id is None:
                return False, None
            row = session.execute(sa.select(col(Principal.id), col(Principal.needs_reconnect_at)).where(
                col(Principal.credential_id) == cred_id, col(Principal.name) == principal)).first()
            if row is None or row[1] is None:
                return False, None
            cleared = rows_matched(session.execute(sa.update(Principal).where(
                col(Principal.id) == row[0], col(Principal.needs_reconnect_at).is_not(None))
                .values(needs_reconnect_at=None).execution_options(synchronize_session=False))) == 1
            return cleared, row[1]
