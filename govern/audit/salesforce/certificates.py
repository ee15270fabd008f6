"""What the audit needs to know about a certificate in metadata: expiry, signature hash, key size.
Only public certificates are read here (a connected app's certificate is the public half of a JWT key)."""
from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def describe_certificate(pem: str) -> dict[str, Any]:
    try:
        cert = x509.load_pem_x509_certificate(pem.strip().encode())
    except ValueError:
        return {"error": "the certificate cannot be parsed"}
    key = cert.public_key()
    size = key.key_size if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)) else None
    algo = cert.signature_hash_algorithm
    return {"not_after": cert.not_valid_after_utc.isoformat(), "signature_hash": algo.name if algo else None,
            "key_type": "rsa" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__, "key_size": size,
            "subject": cert.subject.rfc4514_string()}
