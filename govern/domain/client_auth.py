"""The integration user's client-secret rule (RFC 6749 section 2.3.1), shared by the token endpoint
(govern.broker.oauth_server.IntegrationClient.check_client_secret) and the client_secret rotator.

During a rotation's overlap window two secrets are valid: the current one and the previous one until
`previous_secret_expires_at`. After it, only the current one. A user that is not active has none.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from govern.domain.passwords import hash_password, verify_password


def hash_client_secret(secret: str) -> str:
    return hash_password(secret)


def secret_matches(presented: str, stored: str | None) -> bool:
    if stored and not stored.startswith("scrypt$"):
        # SHA-256 hex of a high-entropy secret (an alternative some stores use).
        return hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), stored)
    return verify_password(presented, stored)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def secret_accepted(presented: str, current_hash: str | None, previous_hash: str | None,
                    previous_expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """The current secret, or the previous one until its overlap ends (strictly before expiry)."""
    if not presented:
        return False
    if secret_matches(presented, current_hash):
        return True
    expires = _aware(previous_expires_at)
    if previous_hash and expires is not None and now < expires:
        return secret_matches(presented, previous_hash)
    return False


def verify_client_secret(user: Any, presented: str, now: dt.datetime) -> bool:
    """`user` is anything with status, client_secret_hash, previous_client_secret_hash, previous_secret_expires_at."""
    if getattr(user, "status", "active") != "active":
        return False
    return secret_accepted(presented, user.client_secret_hash, user.previous_client_secret_hash,
                           user.previous_secret_expires_at, now)


def spend_dummy_hash(presented: str) -> None:
    """The same scrypt work as a real check, against no hash: an unknown client id costs what a wrong
    secret costs, so the two cannot be told apart by timing (govern.broker.client_authentication)."""
    verify_password(presented, None)
