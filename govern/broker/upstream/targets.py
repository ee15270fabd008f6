"""Resolving a named credential and a principal name to what a token request needs (one database read).

Per-user principals (ExternalCredential.principal_type "per_user") resolve to the calling integration
user's own upstream identity: `principal` may name the Principal row, or the integration user whose
Principal row (Principal.integration_user_id) belongs to this credential.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from govern.broker.upstream.errors import UpstreamNotConfigured
from govern.errors import NotFound
from govern.store.tables import ExternalCredential, IntegrationUser, NamedCredential, Principal


@dataclass(frozen=True)
class Target:
    named_credential: str
    credential: str
    protocol: str
    token_url: str | None
    client_id: str | None
    client_auth_method: str | None
    audience: str | None
    default_scopes: tuple[str, ...]
    header_name: str | None
    principal: str | None  # the Principal row's name (addresses its secrets)
    principal_id: int | None
    subject: str | None
    timeout: float


def resolve_target(sessions, named_credential: str, principal: str | None) -> Target:
    with sessions() as session:
        row = session.execute(sa.select(NamedCredential, ExternalCredential)
                              .join(ExternalCredential, ExternalCredential.id == NamedCredential.credential_id)
                              .where(NamedCredential.external_id == named_credential)).first()
        if row is None:
            raise NotFound(f"no named credential {named_credential!r}")
        nc, cred = row
        prin = None
        if principal:
            prin = session.execute(sa.select(Principal).where(
                Principal.credential_id == cred.id, Principal.name == principal)).scalar_one_or_none()
            if prin is None and cred.principal_type == "per_user":
                prin = session.execute(sa.select(Principal).join(
                    IntegrationUser, IntegrationUser.id == Principal.integration_user_id).where(
                    Principal.credential_id == cred.id, IntegrationUser.external_id == principal)).scalar_one_or_none()
            if prin is None:
                raise UpstreamNotConfigured(f"credential {cred.external_id!r} has no principal {principal!r}")
        else:
            named = session.execute(sa.select(Principal).where(
                Principal.credential_id == cred.id, Principal.kind == "named")).scalars().all()
            if len(named) == 1:
                prin = named[0]
        return Target(named_credential=nc.external_id, credential=cred.external_id, protocol=cred.protocol,
                      token_url=cred.token_url, client_id=cred.client_id, client_auth_method=cred.client_auth_method,
                      audience=cred.audience, default_scopes=tuple(cred.scopes or ()), header_name=cred.header_name,
                      principal=prin.name if prin else None, principal_id=prin.id if prin else None,
                      subject=prin.subject if prin else None, timeout=float(nc.timeout_seconds or 10.0))
