"""Workload identity federation: an integration user that trusts an external issuer instead of holding a secret.

`trust:` in governance.yaml (docs/federation.md) names one or more issuers (a GitHub Actions, Kubernetes or
SPIFFE OIDC issuer), the subject their token must carry, required claims and a maximum age. The caller sends
the issuer's token as an RFC 7523 section 2.2 client assertion; govern verifies its signature with the issuer's
keys (govern.broker.federation), then `check_assertion` here applies the trust: audience, expiry (`exp`, `nbf`),
age (`iat`), subject and claims. The replay check (`jti`) needs the shared store and is the broker's.

Subject and claim strings may hold `*`, which matches any run of characters (`repo:acme/app:*`); a trust that
uses it is wider than one that does not, and the audit says so (GOV-FED-001 to GOV-FED-003); keys fetched over
plain http from another host are GOV-FED-004.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from govern.domain.resilience import Seconds, Value

# RFC 7518 section 3.1 and RFC 8037: asymmetric signatures only. `none` and the HMAC family (HS256...) are never
# accepted: a verifier that took HS256 with an issuer's public key as the HMAC secret could be forged by anyone.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
PUBLIC_KEY_TYPES = ("RSA", "EC", "OKP")
# JWK members only a private (or symmetric) key carries: RFC 7518 sections 6.2.2, 6.3.2, 6.4.1; RFC 8037.
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# Registered claims the checks below own; a trust cannot redefine them as "required claims".
REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
MAX_TOKEN_AGE = 24 * 3600
MAX_JTI_LENGTH = 512


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value) or len(value) > 1000:
        raise ValueError("must be an http(s) URL (at most 1000 characters)")
    return value


Url = Annotated[str, AfterValidator(_url)]


def public_jwks(value: dict[str, Any]) -> dict[str, Any]:
    """An inline JWK Set (RFC 7517 section 5) of public, asymmetric keys; anything else is refused."""
    keys = value.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError("must be a JWK Set with at least one key: {keys: [...]}")
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or key.get("kty") not in PUBLIC_KEY_TYPES:
            raise ValueError(f"keys[{i}] is not an RSA, EC or OKP public key")
        private = sorted(m for m in PRIVATE_JWK_MEMBERS if m in key)
        if private:
            raise ValueError(f"keys[{i}] has private key members ({', '.join(private)}); give only the public key")
    return value


def _rs256() -> list[Algorithm]:
    return ["RS256"]


class TrustedIssuer(Value):
    """One issuer whose tokens the user accepts: its `iss`, where its keys are, and the algorithms allowed."""

    issuer: Url
    jwks_url: Url | None = None  # fetched and cached (govern.broker.federation.JwksCache)
    jwks: Annotated[dict[str, Any], AfterValidator(public_jwks)] | None = None  # or the keys themselves
    algorithms: Annotated[list[Algorithm], Field(min_length=1)] = Field(default_factory=_rs256)

    @model_validator(mode="after")
    def _one_key_source(self):
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError("give exactly one of jwks_url (the issuer's JWKS endpoint) and jwks (its keys inline)")
        return self


class FederationTrust(Value):
    """`trust:` of an integration user."""

    issuers: Annotated[list[TrustedIssuer], Field(min_length=1, max_length=10)]
    subject: Annotated[str, Field(min_length=1, max_length=1000)]  # the `sub` required; `*` matches any run
    claims: dict[str, Any] = Field(default_factory=dict)  # required claims: exact values (nested for objects)
    max_token_age: Annotated[Seconds, Field(gt=0, le=MAX_TOKEN_AGE)] = 600.0  # now - iat, at most
    audience: Annotated[str, Field(min_length=1, max_length=1000)] | None = None  # default: govern's token URL

    @model_validator(mode="after")
    def _claims_are_values(self):
        for name in self.claims:
            if name in REGISTERED:
                raise ValueError(f"claims: {name!r} is checked by govern itself; use subject/audience/max_token_age")
        problem = _claim_value_problem(self.claims, "claims")
        if problem:
            raise ValueError(problem)
        return self

    def issuer(self, iss: Any) -> TrustedIssuer | None:
        return next((i for i in self.issuers if i.issuer == iss), None) if isinstance(iss, str) else None


def plain_http_outside_loopback(url: str) -> bool:
    """True for an `http://` URL whose host is not this machine (localhost, 127.0.0.0/8, ::1): keys fetched
    from it can be replaced by anyone on the path, and with them any token (GOV-FED-004)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name other than localhost may resolve anywhere


def _claim_value_problem(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        if not value and where != "claims":
            return f"{where}: an empty mapping requires nothing; remove it"
        for k, v in value.items():
            problem = _claim_value_problem(v, f"{where}.{k}")
            if problem:
                return problem
        return None
    if isinstance(value, (str, bool, int)) and not isinstance(value, float):
        return None
    return f"{where}: a required claim is a string, a number, true/false, or a mapping of those"


# --- the checks, after the signature ---------------------------------------------------------------

class AssertionRefused(Exception):
    """A federated assertion the trust refuses. `reason` is a stable code (it goes to the decision log as
    `federation:<reason>`); `description` is safe to show the caller: it names what failed, never a value."""

    def __init__(self, reason: str, description: str):
        super().__init__(description)
        self.reason = reason
        self.description = description


def pattern_matches(pattern: str, value: Any) -> bool:
    """Exact equality, except that each `*` in the pattern matches any run of characters (including none)."""
    if not isinstance(value, str):
        return False
    if "*" not in pattern:
        return value == pattern
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    return re.fullmatch(regex, value, re.DOTALL) is not None


def claim_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and claim_matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, str):
        return pattern_matches(expected, actual)
    if isinstance(expected, bool):
        return actual is expected
    return type(actual) is type(expected) and actual == expected


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_assertion(trust: FederationTrust, claims: dict[str, Any], *, audience: str, now: float,
                    leeway: float) -> None:
    """RFC 7523 section 3 on a verified token's claims, and the trust's own conditions; raises AssertionRefused.

    `now` is in seconds since the epoch; `leeway` allows for clock skew between the issuer and govern."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if (trust.audience or audience) not in audiences:
        raise AssertionRefused("audience", "the assertion's audience (aud) is not the one this client trusts")
    exp = _number(claims, "exp")
    if exp is None:
        raise AssertionRefused("expired", "the assertion has no expiry (exp)")
    if exp + leeway <= now:
        raise AssertionRefused("expired", "the assertion has expired (exp)")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf - leeway > now:
        raise AssertionRefused("not_yet_valid", "the assertion is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is None or iat - leeway > now:
        raise AssertionRefused("issued_at", "the assertion has no issue time (iat), or one in the future")
    if now - iat > trust.max_token_age + leeway:
        raise AssertionRefused("too_old", "the assertion is older than the trust's max_token_age (iat)")
    if not pattern_matches(trust.subject, claims.get("sub")):
        raise AssertionRefused("subject", "the assertion's subject (sub) is not the one this client trusts")
    for name, expected in trust.claims.items():
        if not claim_matches(expected, claims.get(name)):
            raise AssertionRefused("claim", f"the assertion's claim {name!r} does not match this client's trust")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise AssertionRefused("jti", "the assertion has no usable token id (jti)")


# --- what the audit calls too broad ---------------------------------------------------------------

def wildcard_subject(trust: FederationTrust) -> bool:
    return "*" in trust.subject


def branch_wildcard(trust: FederationTrust) -> str | None:
    """The `ref` pattern (a claim, or the ref part of a GitHub Actions subject) that admits any branch or tag."""
    ref = trust.claims.get("ref")
    if isinstance(ref, str) and "*" in ref:
        return ref
    match = re.search(r":ref:([^:]*\*[^:]*)", trust.subject)
    return match.group(1) if match else None
