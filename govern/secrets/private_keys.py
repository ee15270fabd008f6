"""A private key is parsed before it is stored, and its type checked against the algorithm govern signs
with. A credential has no algorithm setting of its own: govern.broker.upstream.assertions signs RS256
with an RSA key and ES256 with an EC key (the RFC 8725 allow-list), so the key's type names it. RS256 needs an RSA key of at least 2048 bits (RFC 7518 section
3.3), ES256 an EC key on P-256 (section 3.4). Anything else (a public key, a certificate, an encrypted
key, Ed25519, another curve, a short RSA key, a lone BEGIN line) is refused with a clear message and
nothing is stored.

The stored form is canonical PKCS#8 PEM. A PEM whose line breaks were lost on the way (a single-line
form field turns them into spaces) is read too: base64 ignores the whitespace between the armour lines.
"""
from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from govern.domain.secret import Secret
from govern.errors import ValidationFailed

SIGNING_ALGORITHMS = ("RS256", "ES256")
MIN_RSA_BITS = 2048
_ARMOUR = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed([{"location": "value", "message": message}])


def _normalised_pem(text: str) -> bytes:
    match = _ARMOUR.search(text.strip())
    if match is None:
        if "-----BEGIN" in text:
            raise _refuse("the private key is incomplete: a PEM block needs its BEGIN line, the base64 body "
                          "and its END line")
        raise _refuse("the private key must be in PEM form (-----BEGIN PRIVATE KEY----- ...)")
    label, body = match.group(1), match.group(2)
    if "ENCRYPTED" in label or "Proc-Type: 4,ENCRYPTED" in body:
        raise _refuse("the private key is encrypted; store it decrypted (the secret store encrypts it)")
    if label in ("PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"):
        raise _refuse(f"this is a {label.lower()}, not a private key")
    b64 = re.sub(r"\s+", "", body)
    if not b64:
        raise _refuse("the private key is incomplete: the PEM block has no body")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


def signing_algorithm(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise _refuse(f"the RSA key has {key.key_size} bits; RS256 needs at least {MIN_RSA_BITS}")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise _refuse(f"the EC key is on {key.curve.name}; ES256 needs P-256 (secp256r1)")
        return "ES256"
    raise _refuse(f"a {type(key).__name__.replace('PrivateKey', '').lstrip('_') or 'key'} key cannot sign "
                  f"{' or '.join(SIGNING_ALGORITHMS)}; use an RSA (2048+ bits) or P-256 EC key")


def parse_private_key(value: Secret) -> tuple[Secret, str]:
    """The canonical PKCS#8 PEM of `value` and the algorithm it signs with, or ValidationFailed."""
    pem = _normalised_pem(value.reveal())
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise _refuse("the private key is encrypted; store it decrypted (the secret store encrypts it)") from None
    except (ValueError, Exception):  # noqa: BLE001 - cryptography raises several types for malformed input
        raise _refuse("the private key cannot be read: the PEM body is not a valid RSA or EC private key") \
            from None
    algorithm = signing_algorithm(key)
    canonical = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    return Secret(canonical), algorithm
