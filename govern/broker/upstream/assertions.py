"""Signed JWT assertions of RFC 7523: as an authorization grant (section 2.1) and for client authentication
(section 2.2, `private_key_jwt`). Keys come from the secret store as PEM, wrapped in Secret."""
from __future__ import annotations

import datetime as dt
import uuid

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from joserfc import jwt

from govern.domain.secret import Secret
from govern.errors import ConfigurationError

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 120  # seconds: short, RFC 7523 section 3 item 4 ("exp" limits the replay window)


def _key(private_key: Secret):
    pem = private_key.reveal()
    for cls, alg in ((RSAKey, "RS256"), (ECKey, "ES256")):
        try:
            return cls.import_key(pem), alg
        except (JoseError, ValueError, TypeError):
            continue
    raise ConfigurationError("the stored private key is not an RSA or EC private key in PEM form")


def sign_assertion(private_key: Secret, *, issuer: str, subject: str, audience: str, now: dt.datetime,
                   lifetime: int = ASSERTION_LIFETIME) -> str:
    key, alg = _key(private_key)
    iat = int(now.timestamp())
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": iat, "exp": iat + lifetime,
              "jti": uuid.uuid4().hex}
    return jwt.encode({"alg": alg, "typ": "JWT"}, claims, key)
