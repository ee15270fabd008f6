"""What govern sends to an upstream token endpoint beyond the grant itself, and how long it keeps the answer.

`TokenRequestParams` is one credential's `scopes`, `audience`, `resource` (RFC 8707 resource indicators, one
or more absolute URIs, each sent as its own `resource` form parameter) and `token_params` (further form
parameters a provider asks for). Parameters that carry secrets, or that govern sets itself, are refused:
a secret belongs in the vault, never in governance.yaml.

`refresh_leeway` says how long before its expiry a cached upstream token stops being served.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

from govern.domain.resilience import Value

# Set by govern from the grant and the vault; a `token_params` entry may not override or smuggle them.
RESERVED_PARAMS = frozenset({"grant_type", "scope", "resource", "audience", "client_id", "code", "code_verifier",
                             "redirect_uri", "client_assertion_type", "username"})
SECRET_WORDS = ("secret", "password", "passwd", "assertion", "private_key", "privatekey", "api_key", "apikey",
                "credential")
DEFAULT_MAX_LEEWAY = 60.0
DEFAULT_LEEWAY_FRACTION = 0.10


def secret_looking(name: str) -> bool:
    lowered = name.lower().replace("-", "_")
    # refresh_token, subject_token and actor_token (RFC 8693), id_token... all end in "token"
    return lowered.endswith("token") or any(word in lowered for word in SECRET_WORDS)


def check_extra_params(extra: dict[str, str]) -> dict[str, str]:
    for name in extra:
        if not name or len(name) > 100:
            raise ValueError("a token parameter needs a name of 1 to 100 characters")
        if secret_looking(name):
            raise ValueError(f"token parameter {name!r} looks like a secret; secrets go in the vault "
                             "(govern secrets put), never in governance.yaml")
        if name.lower() in RESERVED_PARAMS:
            own = f"the credential's `{name}`" if name in ("scope", "resource", "audience") else "govern"
            raise ValueError(f"token parameter {name!r} is set by {own}, not by token_params")
    return extra


def _scalars_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) if isinstance(v, (str, int, float, bool))
                else v for k, v in value.items()}
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _resource_uri(value: str) -> str:
    """RFC 8707 section 2: an absolute URI without a fragment."""
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path) or parts.fragment or "#" in value:
        raise ValueError(f"{value!r} is not an absolute URI without a fragment (RFC 8707 section 2)")
    return value


ResourceUri = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_resource_uri)]
Resources = Annotated[tuple[ResourceUri, ...], BeforeValidator(_one_or_many)]
ExtraParams = Annotated[dict[str, str], BeforeValidator(_scalars_as_text), AfterValidator(check_extra_params)]


class TokenRequestParams(Value):
    scopes: tuple[str, ...] = ()
    audience: Optional[str] = None
    resource: Resources = ()
    extra: ExtraParams = Field(default_factory=dict)

    def form(self, scopes: tuple[str, ...] = (), *, audience: bool = True) -> list[tuple[str, str]]:
        """The form fields for a token request: `scope` (the asked scopes, else the defaults), `audience` (not for
        the JWT bearer grant, where it is the assertion's `aud`), one `resource` per indicator (RFC 8707 section
        2.1), then the extra parameters."""
        fields: list[tuple[str, str]] = []
        wanted = scopes or self.scopes
        if wanted:
            fields.append(("scope", " ".join(wanted)))
        if audience and self.audience:
            fields.append(("audience", self.audience))
        fields.extend(("resource", r) for r in self.resource)
        fields.extend(sorted(self.extra.items()))
        return fields


def refresh_leeway(lifetime: float, configured: float | None = None, *,
                   max_leeway: float = DEFAULT_MAX_LEEWAY) -> float:
    """Seconds before expiry at which a cached token stops being served.

    Configured per credential (`leeway:` in governance.yaml): that value. Otherwise min(max_leeway, 10% of the
    token's lifetime): a 60 s token is served from the cache for 54 s, a one-hour token for 59 minutes.
    (A fixed 60 s leeway made every 60 s token stale on arrival.)"""
    if configured is not None:
        return max(0.0, float(configured))
    return max(0.0, min(max_leeway, DEFAULT_LEEWAY_FRACTION * max(0.0, lifetime)))


def leeway_too_large(lifetime: float, leeway: float) -> bool:
    """A leeway that leaves less than half of the token's life for use (worth a WARNING)."""
    return lifetime > 0 and lifetime - leeway < lifetime / 2
