"""Errors of the secret stores, as branches of govern's one error tree (govern.errors)."""
from __future__ import annotations

from govern.errors import Forbidden, GovernError


class SecretIntegrityError(GovernError):
    """A ciphertext did not authenticate: it was altered, moved to another path or version, or its key is gone."""

    code = "secret_integrity_failed"
    status = 500
    title = "A stored secret failed its integrity check"


class SecretStorePermissionDenied(Forbidden):
    """The secret store refused govern's own identity (a Vault policy, a revoked token)."""

    code = "secret_store_permission_denied"
    status = 503  # the caller did nothing wrong: govern's vault identity lacks a permission
    title = "govern is not allowed to do this in the secret store"


class SecretRecordingFailed(GovernError):
    """The value is in the store but its reference could not be recorded; the same put again converges."""

    code = "secret_recording_failed"
    status = 500
    title = "The secret was stored but its reference was not recorded"
