"""The Secret value type: a secret value that cannot leak by accident.

Its repr, str and JSON form are redacted; the only way to the value is `reveal()`, which is easy to
find in review.
"""
from __future__ import annotations

import hmac

from govern.errors import ValidationFailed

MAX_SECRET_BYTES = 64 * 1024


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str | bytes):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str or bytes")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __format__(self, spec: str) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled")

    def __json__(self) -> str:  # for encoders that honour it
        return "**********"


def validate_secret_value(raw: bytes | str) -> Secret:
    """Refuse empty and oversized secrets (the rule, in one place)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data.strip():
        raise ValidationFailed("the secret is empty")
    if len(data) > MAX_SECRET_BYTES:
        raise ValidationFailed(f"the secret is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        return Secret(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationFailed("the secret must be UTF-8 text") from None


def secret_ref_name(owner_kind: str, owner: str, principal: str | None, field: str) -> str:
    """The SecretRef name (and store path) of a secret: what `govern secrets put` writes, what the broker
    writes when it stores a refresh token from the connect flow or a rotation, and what the proxy and the
    rotation jobs look up. One name for one secret, whoever writes it first."""
    if owner_kind == "integration_user":
        return f"integration_user/{owner}/{field}"
    if principal:
        return f"credential/{owner}/principal/{principal}/{field}"
    return f"credential/{owner}/{field}"
