"""What the audit needs to know about a certificate in metadata: expiry, signature hash, key type and size.
Only public certificates are read here (a connected app's certificate is the public half of a JWT key). Metadata
holds them as PEM (RFC 7468) or as the bare base64 of the DER encoding (RFC 5280), with or without line breaks."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa


def _load(text: str) -> x509.Certificate:
    text = text.strip()
    if "-----BEGIN" in text:
        return x509.load_pem_x509_certificate(text.encode())
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither PEM nor base64") from None
    return x509.load_der_x509_certificate(der)


def _key(cert: x509.Certificate) -> tuple[str, int | None]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    return type(key).__name__, None


def describe_certificate(text: str) -> dict[str, Any]:
    try:
        cert = _load(text)
    except ValueError:
        return {"error": "the certificate cannot be parsed (neither PEM nor base64 DER)"}
    key_type, size = _key(cert)
    try:
        algo = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - an algorithm cryptography does not know (e.g. a retired one) is reported as such
        algo = None
    return {"not_after": cert.not_valid_after_utc.isoformat(), "signature_hash": algo.name if algo else None,
            "key_type": key_type, "key_size": size, "subject": cert.subject.rfc4514_string()}
