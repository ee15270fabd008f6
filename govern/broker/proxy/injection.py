"""Inject the upstream credential, like a Salesforce Named Credential callout: the caller never holds it.

By protocol of the external credential:
- oauth2_*: `Authorization: Bearer <token>` from the UpstreamTokenSource;
- basic: the principal's subject as username, the `password` secret (RFC 7617);
- api_key_header: header `header_name` with the `api_key` secret;
- custom_header: header `header_name` with the `value` secret.
Secrets are found through the SecretRef rows `govern secrets put` writes (`credential/<credential>/<field>`,
or `credential/<credential>/principal/<principal>/<field>`) and read from the secret store at `SecretRef.path`.
A store that is down, with nothing cached, is DegradedMode.
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from govern.broker.proxy.errors import CredentialMissing, DegradedMode
from govern.broker.proxy.targets import Target
from govern.broker.version_memo import VersionMemo
from govern.domain.secret import Secret
from govern.errors import SecretNotFound, SecretStoreUnavailable
from govern.domain.secret import secret_ref_name
from govern.ports import CredentialSecretRefs, SecretStore, UpstreamTokenSource

if TYPE_CHECKING:
    from govern.broker.landscape import LandscapeCache

FIELD_BY_PROTOCOL = {"basic": "password", "api_key_header": "api_key", "custom_header": "value"}


def secret_ref_id(credential: str, principal: str | None, field: str) -> str:
    """The name `govern secrets put` gives the secret (govern.secrets.service.secret_ref_name)."""
    return secret_ref_name("credential", credential, principal, field)


class CredentialInjector:
    """A static secret (password, API key, header value) read from the store, and where it is stored, are kept
    in memory for one landscape version (govern.broker.version_memo): without it every proxied call was a
    secret-store read (a Vault round trip with the vault store, a database read and decryption with the
    local one). A put, a rotation or a delete moves the stored landscape version, so the next call after the
    snapshot's bound reads the new value; a 401 from the upstream drops them at once."""

    def __init__(self, *, landscape: LandscapeCache, upstream_tokens: UpstreamTokenSource | None,
                 secret_store: Callable[[], SecretStore | None], refs: CredentialSecretRefs):
        self.landscape = landscape  # the snapshot whose version bounds the memos below
        self.upstream_tokens = upstream_tokens
        self._secret_store = secret_store  # wired by govern.secrets; read when a static secret is needed
        self.refs = refs  # where each secret is stored (govern.store.credential_secret_refs)
        self._paths: VersionMemo[str, str | None] = VersionMemo()
        self._secrets: VersionMemo[str, Secret] = VersionMemo()

    def _version(self) -> int:
        return int(self.landscape.version)

    def headers(self, target: Target, principal: str | None, scopes: tuple[str, ...] = (), *,
                rejected: str | None = None) -> dict[str, str]:
        """`scopes`: the decision's granted scopes; the upstream token is asked for exactly these (cached per
        scope set), never for the credential's own scopes. `rejected`: the bearer token the upstream just
        refused (see UpstreamTokens.get_token)."""
        protocol = target.protocol
        if protocol.startswith("oauth2"):
            token = self._token(target, principal, scopes, rejected)
            return {"Authorization": f"Bearer {token.reveal()}"}
        field = FIELD_BY_PROTOCOL.get(protocol)
        if field is None:
            raise CredentialMissing(f"protocol {protocol!r} of {target.credential} cannot be injected by the proxy")
        secret = self._secret(target, principal, field)
        if protocol == "basic":
            username = target.principals.get(principal or "") or ""
            if not username:
                raise CredentialMissing(f"principal {principal!r} of {target.credential} has no subject (username)")
            raw = base64.b64encode(f"{username}:{secret.reveal()}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        if not target.header_name:
            raise CredentialMissing(f"{target.credential} has no header_name")
        return {target.header_name: secret.reveal()}

    def invalidate(self, target: Target, principal: str | None, scopes: tuple[str, ...] = (), *,
                   refused: str | None = None) -> None:
        """`refused`: the bearer token the upstream refused; the cached token is dropped only while it is
        still that one (a newer token another call already got stays)."""
        if target.protocol.startswith("oauth2"):
            if self.upstream_tokens is not None:
                self.upstream_tokens.invalidate(target.named_credential, principal, scopes, token=refused)
            return
        # the next call re-reads the store (the secret may just have been rotated)
        self._secrets.forget()
        self._paths.forget()

    def _token(self, target: Target, principal: str | None, scopes: tuple[str, ...], rejected: str | None) -> Secret:
        source = self.upstream_tokens
        if source is None:
            raise CredentialMissing("no upstream token source is configured")
        try:
            token = source.get_token(target.named_credential, principal, scopes, rejected=rejected)
        except SecretStoreUnavailable:
            raise DegradedMode("the secret store is down and no cached upstream token exists") from None
        return token.access_token

    def _secret(self, target: Target, principal: str | None, field: str) -> Secret:
        store = self._secret_store()
        if store is None:
            raise CredentialMissing("no secret store is configured")
        version = self._version()
        path = self._path(version, target.credential, principal, field)
        try:
            return self._secrets.get(version, path, lambda: store.get(path))
        except SecretStoreUnavailable:
            raise DegradedMode("the secret store is down; the credential cannot be read") from None
        except SecretNotFound:
            raise CredentialMissing(f"the {field} of {target.credential} is not stored") from None

    def _path(self, version: int, credential: str, principal: str | None, field: str) -> str:
        wanted = [(principal, secret_ref_id(credential, principal, field))]
        if principal:
            wanted.append((None, secret_ref_id(credential, None, field)))
        for owner_principal, ext_id in wanted:
            path = self._paths.get(version, ext_id, partial(self._stored_path, credential, owner_principal, field))
            if path:
                return path
        raise CredentialMissing(f"no secret reference for the {field} of {credential}")

    def _stored_path(self, credential: str, principal: str | None, field: str) -> str | None:
        # By columns, like the upstream token source (secret_refs.py): `govern secrets put` and the
        # rotation worker may write refs under another external-id scheme.
        return self.refs.newest_path(credential, principal, field)
