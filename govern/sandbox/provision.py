"""The sandbox's secrets: generated at each start, then stored into govern's secret store.

They are stored through govern's SecretService, exactly as `govern secrets put` stores them (a new version
in the local store or Vault, a SecretRef row, an admin action `cli:<OS user>`), under the credentials of
the example landscape's `sandbox` system. The sandbox only runs in development: `refuse_in_production`.
"""
from __future__ import annotations

import secrets as _random
from dataclasses import dataclass, field

from govern.domain.secret import Secret
from govern.errors import ConfigurationError, NotFound
from govern.sandbox import CLIENT_ID, REFRESH_TOKEN_USER, SCOPES
from govern.secrets.service import secret_service

CLIENT_CREDENTIALS = "sandbox-client-credentials"
REFRESH_TOKEN_CREDENTIAL = "sandbox-refresh-token"
API_KEY_CREDENTIAL = "sandbox-api-key"


@dataclass(frozen=True)
class SandboxSecrets:
    client_id: str
    scopes: tuple[str, ...]
    refresh_token_user: str
    client_secret: Secret = field(repr=False)
    refresh_token: Secret = field(repr=False)
    api_key: Secret = field(repr=False)

    @classmethod
    def generate(cls) -> SandboxSecrets:
        return cls(CLIENT_ID, SCOPES, REFRESH_TOKEN_USER, Secret("sbx_cs_" + _random.token_urlsafe(32)),
                   Secret("sbx_rt_" + _random.token_urlsafe(32)), Secret("sbx_key_" + _random.token_urlsafe(32)))

    def placements(self) -> list[tuple[str, str | None, str, Secret]]:
        """(credential, principal, field, value): where govern keeps each secret (examples/governance.yaml)."""
        return [(CLIENT_CREDENTIALS, None, "client_secret", self.client_secret),
                (REFRESH_TOKEN_CREDENTIAL, None, "client_secret", self.client_secret),
                (REFRESH_TOKEN_CREDENTIAL, self.refresh_token_user, "refresh_token", self.refresh_token),
                (API_KEY_CREDENTIAL, None, "api_key", self.api_key)]


def refuse_in_production(env: str) -> None:
    """`env`: GOVERN_ENV, given before the rest of the settings is loaded so that this refusal comes first."""
    if env == "production":
        raise ConfigurationError("govern sandbox is a development tool and does not run with GOVERN_ENV=production")


def provision(services, sandbox_secrets: SandboxSecrets, *, actor: str) -> list[str]:
    """Store every sandbox secret into govern's secret store; return one status line per secret (no value).
    A landscape without the sandbox's credentials is a ConfigurationError naming the file to apply."""
    service = secret_service(services)
    missing = []
    for credential in dict.fromkeys(c for c, *_ in sandbox_secrets.placements()):
        try:
            service.check_credential(credential)
        except NotFound:
            missing.append(credential)
    if missing:
        raise ConfigurationError(f"the landscape has no {', '.join(missing)}: run "
                                 "`govern apply -f examples/governance.yaml` first (it declares the sandbox)")
    lines = []
    for credential, principal, field_name, value in sandbox_secrets.placements():
        status = service.put_for_credential(credential, field_name, value, principal=principal, actor=actor)
        lines.append(f"{status.ref}: {status.describe()} ({status.store})")
    return lines
