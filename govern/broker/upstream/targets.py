"""Resolving a named credential and a principal name to what a token request needs, from the landscape
snapshot (govern.broker.landscape): no database read.

Per-user principals (ExternalCredential.principal_type "per_user") resolve to the calling integration
user's own upstream identity: `principal` may name the Principal row, or the integration user whose
Principal row (Principal.integration_user_id) belongs to this credential.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from typing import Any

from govern.broker.upstream.errors import UpstreamNotConfigured
from govern.config_as_code.units import parse_duration
from govern.domain.resilience import parse_stored
from govern.domain.token_request import TokenRequestParams
from govern.store.landscape_snapshot import CredentialRecord, NamedCredentialRecord, PrincipalRecord
from govern.store.tables import ExternalCredential


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


def token_settings(cred: ExternalCredential) -> dict[str, Any]:
    """The credential row's token-request settings as Target fields; a row that does not parse is an error."""
    return credential_token_settings(cred.external_id, scopes=cred.scopes, audience=cred.audience,
                                     resource=cred.resource, token_params=cred.token_params,
                                     leeway_seconds=cred.leeway_seconds, rotation=cred.rotation)


def credential_token_settings(credential: str, *, scopes: Iterable[str] | None, audience: str | None,
                              resource: Iterable[str] | None, token_params: Mapping[str, Any] | None,
                              leeway_seconds: float | None, rotation: Mapping[str, Any] | None) -> dict[str, Any]:
    """A credential's stored token-request settings as Target fields; a value that does not parse is an error."""
    params = parse_stored(TokenRequestParams, {"scopes": list(scopes or ()), "audience": audience,
                                               "resource": list(resource or ()),
                                               "extra": dict(token_params or {})},
                          f"credential {credential}: token request parameters")
    overlap = (rotation or {}).get("overlap")
    return {"params": params, "leeway": leeway_seconds,
            "rotation_overlap": parse_duration(overlap) if overlap else None}


def settings_of(cred: CredentialRecord) -> dict[str, Any]:
    """A typed credential record's token-request settings as Target fields (see token_settings)."""
    return {"params": cred.params, "leeway": cred.leeway, "rotation_overlap": cred.rotation_overlap}


@dataclass(frozen=True)
class PrincipalEntry:
    id: int
    name: str
    kind: str  # named | per_user
    subject: str | None
    user: str | None  # a per-user principal's integration user (external id)
    needs_reconnect: bool = False  # disconnected, or its refresh token refused upstream


@dataclass(frozen=True)
class UpstreamEntry:
    """One named credential as the token source reads it, with every principal of its credential: built when
    the landscape snapshot loads (govern.broker.landscape), resolved per request without a database read."""

    named_credential: str
    credential: str
    principal_type: str
    protocol: str
    token_url: str | None
    client_id: str | None
    client_auth_method: str | None
    settings: dict[str, Any]  # token_settings(): params, leeway, rotation_overlap
    header_name: str | None
    timeout: float
    principals: tuple[PrincipalEntry, ...]
    # How callers name the principals that need a reconnect (their names, per-user principals' integration users,
    # and "" for the credential's one named principal when the caller names none): no token is handed out for them.
    reconnect: frozenset[str] = frozenset()

    def resolve(self, principal: str | None) -> Target:
        """`principal` names a principal of the credential or, for per-user credentials, the integration user
        whose principal it is; none: the credential's one named principal, if it has exactly one."""
        found: PrincipalEntry | None = None
        if principal:
            found = next((p for p in self.principals if p.name == principal), None)
            if found is None and self.principal_type == "per_user":
                found = next((p for p in self.principals if p.user == principal), None)
            if found is None:
                raise UpstreamNotConfigured(f"credential {self.credential!r} has no principal {principal!r}")
        else:
            named = [p for p in self.principals if p.kind == "named"]
            if len(named) == 1:
                found = named[0]
        return Target(named_credential=self.named_credential, credential=self.credential, protocol=self.protocol,
                      token_url=self.token_url, client_id=self.client_id, client_auth_method=self.client_auth_method,
                      **self.settings, header_name=self.header_name,
                      principal=found.name if found else None, principal_id=found.id if found else None,
                      subject=found.subject if found else None, timeout=self.timeout)


def principal_entries(principals: list[PrincipalRecord], users: dict[int, str]) -> tuple[PrincipalEntry, ...]:
    """One credential's principals as the token source resolves them; `users`: integration user id -> external id."""
    return tuple(PrincipalEntry(id=p.id, name=p.name, kind=p.kind, subject=p.subject,
                                user=users.get(p.integration_user_id) if p.integration_user_id else None,
                                needs_reconnect=p.needs_reconnect)
                 for p in principals)


def reconnect_names(principal_type: str, principals: tuple[PrincipalEntry, ...]) -> frozenset[str]:
    """The names UpstreamEntry.resolve would resolve to a principal that needs a reconnect."""
    names = {p.name for p in principals if p.needs_reconnect}
    if principal_type == "per_user":
        names |= {p.user for p in principals if p.needs_reconnect and p.user}
    named = [p for p in principals if p.kind == "named"]
    if len(named) == 1 and named[0].needs_reconnect:
        names.add("")
    return frozenset(names)


def upstream_entry(nc: NamedCredentialRecord, cred: CredentialRecord, settings: dict[str, Any],
                   principals: tuple[PrincipalEntry, ...]) -> UpstreamEntry:
    """`settings` (settings_of) and `principals` (principal_entries) are built once per credential and shared by
    its named credentials."""
    return UpstreamEntry(
        named_credential=nc.external_id, credential=cred.external_id, principal_type=cred.principal_type,
        protocol=cred.protocol, token_url=cred.token_url, client_id=cred.client_id,
        client_auth_method=cred.client_auth_method, settings=settings, header_name=cred.header_name,
        timeout=nc.timeout or 10.0, principals=principals,
        reconnect=reconnect_names(cred.principal_type, principals))
