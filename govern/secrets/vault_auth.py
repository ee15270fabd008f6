"""How govern authenticates itself to Vault/OpenBao: a token, AppRole, or Kubernetes.

- Token: `GOVERN_VAULT_TOKEN`; facts from `GET /auth/token/lookup-self`.
- AppRole (https://developer.hashicorp.com/vault/docs/auth/approle): `POST /auth/approle/login` with
  GOVERN_VAULT_ROLE_ID and GOVERN_VAULT_SECRET_ID.
- Kubernetes (https://developer.hashicorp.com/vault/docs/auth/kubernetes): `POST /auth/kubernetes/login`
  with the pod's service-account JWT and GOVERN_VAULT_KUBERNETES_ROLE.

`login(client)` sets the client's token and returns {"ttl": seconds, "renewable": bool}.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import hvac

from govern.errors import ConfigurationError

SERVICE_ACCOUNT_JWT = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class VaultAuth(Protocol):
    kind: str
    can_login: bool  # whether a fresh login is possible when the token cannot be renewed

    def login(self, client: hvac.Client) -> dict[str, Any]: ...


@dataclass
class TokenAuth:
    token: str = field(repr=False)
    kind: str = "token"
    can_login: bool = False

    def login(self, client: hvac.Client) -> dict[str, Any]:
        client.token = self.token
        data = client.auth.token.lookup_self()["data"]
        return {"ttl": data.get("ttl") or 0, "renewable": bool(data.get("renewable"))}


@dataclass
class AppRoleAuth:
    role_id: str
    secret_id: str = field(repr=False)
    mount: str = "approle"
    kind: str = "approle"
    can_login: bool = True

    def login(self, client: hvac.Client) -> dict[str, Any]:
        auth = client.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id, mount_point=self.mount)["auth"]
        return {"ttl": auth.get("lease_duration") or 0, "renewable": bool(auth.get("renewable"))}


@dataclass
class KubernetesAuth:
    role: str
    jwt_file: Path = SERVICE_ACCOUNT_JWT
    mount: str = "kubernetes"
    kind: str = "kubernetes"
    can_login: bool = True

    def login(self, client: hvac.Client) -> dict[str, Any]:
        # Read on every login: the kubelet rotates projected service-account tokens.
        jwt = Path(self.jwt_file).read_text().strip()
        auth = client.auth.kubernetes.login(role=self.role, jwt=jwt, mount_point=self.mount)["auth"]
        return {"ttl": auth.get("lease_duration") or 0, "renewable": bool(auth.get("renewable"))}


def auth_from_settings(settings) -> VaultAuth:
    if settings.vault_role_id:
        if not settings.vault_secret_id:
            raise ConfigurationError("GOVERN_VAULT_ROLE_ID needs GOVERN_VAULT_SECRET_ID")
        return AppRoleAuth(settings.vault_role_id, settings.vault_secret_id)
    if settings.vault_kubernetes_role:
        return KubernetesAuth(settings.vault_kubernetes_role)
    if settings.vault_token:
        return TokenAuth(settings.vault_token)
    raise ConfigurationError("the vault store needs GOVERN_VAULT_TOKEN, GOVERN_VAULT_ROLE_ID/SECRET_ID "
                             "or GOVERN_VAULT_KUBERNETES_ROLE")
