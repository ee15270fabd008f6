"""Errors of the secret stores, as branches of govern's one error tree (govern.errors)."""
from __future__ import annotations

from govern.errors import GovernError


class SecretIntegrityError(GovernError):
    """A ciphertext did not authenticate: it was altered, moved to another path or version, or its key is gone."""

    code = "secret_integrity_failed"
    status = 500
    title = "A stored secret failed its integrity check"


class SecretStorePermissionDenied(GovernError):
    """The secret store refused govern's own identity (a Vault 401/403: a policy, a revoked token).

    Not a Forbidden: the HTTP caller did nothing wrong, govern's vault identity is misconfigured.
    """

    code = "secret_store_permission_denied"
    status = 503  # the caller did nothing wrong: govern's vault identity lacks a permission
    title = "govern is not allowed to do this in the secret store"


class SecretRecordingFailed(GovernError):
    """The value is in the store but its reference could not be recorded; the same put again converges."""

    code = "secret_recording_failed"
    status = 500
    title = "The secret was stored but its reference was not recorded"


class VaultRequestRefused(GovernError):
    """The vault answered a request with an error that is neither ours to retry nor a missing secret."""

    code = "secret_store_refused"
    status = 502
    title = "The secret store refused govern's request"
