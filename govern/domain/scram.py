"""Checking a password against a PostgreSQL password verifier, without a server round trip.

PostgreSQL stores `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802 section 3,
RFC 7677) or the legacy `md5<md5(password || role)>`. A password matches a SCRAM verifier when
SHA-256(HMAC(PBKDF2(password, salt, i), "Client Key")) equals StoredKey.
"""
from __future__ import annotations

import base64
import hashlib
import hmac


def verify_postgres_password(password: str, verifier: str | None, role: str) -> bool:
    if not verifier:
        return False
    if verifier.startswith("SCRAM-SHA-256$"):
        try:
            _, params, keys = verifier.split("$")
            iterations, salt_b64 = params.split(":")
            stored_b64, _server_b64 = keys.split(":")
            salt = base64.b64decode(salt_b64)
            stored = base64.b64decode(stored_b64)
        except ValueError:
            return False
        # Generated secrets are ASCII, for which SASLprep (RFC 4013) is the identity.
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, int(iterations))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored)
    if verifier.startswith("md5") and len(verifier) == 35:
        # PostgreSQL's legacy md5 verifier format, read to check a stored role password; govern never writes it.
        expected = "md5" + hashlib.md5((password + role).encode("utf-8"), usedforsecurity=False).hexdigest()
        return hmac.compare_digest(expected, verifier)
    return False
