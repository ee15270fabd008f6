"""Resolving a named credential and a principal name to what a token request needs (one database read).

Per-user principals (ExternalCredential.principal_type "per_user") resolve to the calling integration
user's own upstream identity: `principal` may name the Principal row, or the integration user whose
Principal row (Principal.integration_user_id) belongs to this credential.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from govern.broker.upstream.errors import UpstreamNotConfigured
from govern.config_as_code.units import parse_duration
from govern.domain.resilience import parse_stored
from govern.domain.token_request import TokenRequestParams
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
    params: TokenRequestParams  # default scopes, audience, RFC 8707 resources, extra form parameters
    leeway: float | None  # the credential's own refresh leeway (None: the default rule)
    rotation_overlap: float | None  # seconds a previous client secret stays usable after a new one (None: never)
    header_name: str | None
    principal: str | None  # the Principal row's name (addresses its secrets)
    principal_id: int | None
    subject: str | None
    timeout: float

    @property
    def audience(self) -> str | None:
        return self.params.audience

    @property
    def default_scopes(self) -> tuple[str, ...]:
        return self.params.scopes


def token_settings(cred: ExternalCredential) -> dict:
    """The credential row's token-request settings as Target fields; a row that does not parse is an error."""
    params = parse_stored(TokenRequestParams, {"scopes": list(cred.scopes or ()), "audience": cred.audience,
                                               "resource": list(cred.resource or ()),
                                               "extra": dict(cred.token_params or {})},
                          f"credential {cred.external_id}: token request parameters")
    overlap = (cred.rotation or {}).get("overlap")
    return {"params": params, "leeway": cred.leeway_seconds,
            "rotation_overlap": parse_duration(overlap) if overlap else None}


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
                      **token_settings(cred), header_name=cred.header_name,
                      principal=prin.name if prin else None, principal_id=prin.id if prin else None,
                      subject=prin.subject if prin else None, timeout=float(nc.timeout_seconds or 10.0))
