"""govern's own OAuth 2.0 authorization server for integration users (RFC 6749), built on authlib.

- Grant: client_credentials (RFC 6749 section 4.4) only.
- Client authentication: client_secret_basic (section 2.3.1), verified against the user's scrypt
  hash, and also the previous hash while `previous_secret_expires_at` lies ahead (the rotation
  overlap); or private_key_jwt (RFC 7523 section 2.2, OIDC Core section 9) against the user's
  registered JWKS, with single-use `jti` (replays are refused in Redis when it is configured, otherwise in
  the database: across processes either way; govern.store.seen_assertions); or, for a federated user
  (auth: federated, docs/federation.md), a token of an issuer its `trust:` names, sent as the client assertion
  with the user's id as `client_id` (govern.broker.federation verifies it; no secret is held at all).
- The assertion's audience must be govern's token URL built from GOVERN_PUBLIC_URL (or the public URL, or
  GOVERN_ISSUER), never from the request's Host.
- Rate limits, the address check before the secret, and one answer for every refusal:
  govern.broker.client_authentication. Only active users authenticate, and only from inside their ranges.
- Scopes: the requested ones must be within the user's allowed scopes (invalid_scope); none requested
  means all allowed scopes (section 3.3).
- The access token is a JWT (RFC 9068 profile) signed by govern's rotatable key set (signing_keys),
  living min(GOVERN_ACCESS_TOKEN_LIFETIME_SECONDS, the smallest max_token_lifetime of the user's live
  permission sets). No refresh token is issued (section 4.4.3).
- Errors are RFC 6749 section 5.2 JSON bodies; invalid_client is always 401 with WWW-Authenticate.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field
import base64
import binascii
import json
from urllib.parse import unquote

import sqlalchemy as sa
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from flask import g as flask_g
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from govern.broker.authenticator import AUDIENCE
from govern.broker.client_authentication import REFUSED, ClientAuthGuard, authenticate_client_secret_basic
from govern.broker.federation import FederatedAssertions, JwksCache
from govern.domain.federation import AssertionRefused, FederationTrust
from govern.domain.access_rules import ip_in_ranges, parse_scopes
from govern.domain.client_auth import secret_accepted
from govern.ports import Clock
from govern.store.db import session_scope
from govern.store.tables import Assignment, IntegrationUser, PermissionSet

log = logging.getLogger("govern.oauth")

PRIVATE_KEY_JWT = "private_key_jwt"
CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name (RFC 6749 section 2.3.1)
FEDERATED = "federated"  # an external issuer's token as the client assertion (govern.broker.federation)
ASSERTION_ALGORITHMS = ("RS256", "ES256")


@dataclass
class IntegrationClient(ClientMixin):
    """An integration user seen as an OAuth client (authlib's ClientMixin)."""

    external_id: str
    status: str
    auth_method: str
    secret_hash: str | None = field(repr=False)
    previous_secret_hash: str | None = field(repr=False)
    previous_secret_expires_at: dt.datetime | None
    loaded_at: dt.datetime  # "now" for the overlap check: the client is loaded for one request
    jwks: dict = field(repr=False)
    cidrs: tuple[str, ...]
    allowed_scopes: tuple[str, ...]
    token_lifetime: int
    trust: FederationTrust | None = None

    def get_client_id(self):
        return self.external_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in parse_scopes(scope) if s in self.allowed_scopes)

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        # The one rule (govern.domain.client_auth), which the client_secret rotator tests against too.
        return secret_accepted(client_secret, self.secret_hash, self.previous_secret_hash,
                               self.previous_secret_expires_at, self.loaded_at)

    def check_endpoint_auth_method(self, method, endpoint):
        return endpoint == "token" and method == self.auth_method

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"


class GovernClientCredentialsGrant(ClientCredentialsGrant):
    # The federated method comes before private_key_jwt: both read a client assertion, and only the federated one
    # is named by `client_id` (a private_key_jwt assertion names its client in `sub`).
    TOKEN_ENDPOINT_AUTH_METHODS = [CLIENT_SECRET_BASIC, FEDERATED, PRIVATE_KEY_JWT]

    # The source address is checked during client authentication, before the secret or the signature
    # (govern.broker.client_authentication): a client from outside its ranges never gets this far.

    def validate_requested_scope(self):
        requested = parse_scopes(self.request.payload.scope)
        allowed = set(self.request.client.allowed_scopes)
        if not set(requested) <= allowed:
            raise InvalidScopeError("a requested scope is not allowed for this client")


class PrivateKeyJwtAuth(JWTBearerClientAssertion):
    """RFC 7523 client authentication; registered under its OIDC name, private_key_jwt.

    Its audiences are fixed at start from settings: govern's token URL and public URL (GOVERN_PUBLIC_URL),
    and GOVERN_ISSUER. A request's Host never names an accepted audience."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, audiences: list[str], seen, clock: Clock, guard: ClientAuthGuard, source_ip, leeway: int = 60):
        super().__init__(validate_jti=True, leeway=leeway)
        self._audiences = audiences
        self._seen = seen
        self._clock = clock
        self._guard = guard
        self._source_ip = source_ip

    def get_audiences(self):
        return list(self._audiences)

    def __call__(self, query_client, request):
        """authlib's, with the guard around it: limits first, then the address, then the signature."""
        data = request.form
        assertion = data.get("client_assertion")
        if data.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return None
        _, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidClientError(description=REFUSED, status_code=401)
        address = self._source_ip()
        self._guard.before_attempt(client_id, address)
        client = query_client(client_id)
        if client is None or not ip_in_ranges(address, client.cidrs):
            reason = "unknown or inactive client" if client is None else "source address outside ranges"
            raise self._guard.failed(client_id, address, reason)
        try:
            key = self.resolve_client_public_key(client)
            request.client = client
            self.process_assertion_claims(assertion, key)
        except InvalidClientError as exc:
            raise self._guard.failed(client_id, address, exc.description or "invalid client assertion") from None
        if not client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            raise self._guard.failed(client_id, address, "client registered for another method")
        return client

    def validate_jti(self, claims, jti):
        if not isinstance(jti, str) or not jti or len(jti) > 512:
            return False
        expires = dt.datetime.fromtimestamp(float(claims.get("exp", 0)) + self.leeway, dt.UTC)
        return self._seen.first_use(str(claims["sub"]), jti, max(expires, self._clock.now()))

    def process_assertion_claims(self, assertion, resolve_key):
        """As authlib's, but with an explicit algorithm allow-list (RFC 8725 section 3.1): no HMAC, no none."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except (JoseError, ValueError):
            raise InvalidClientError(description="the client assertion is not valid") from None
        self.verify_claims(token.claims)
        return token.claims

    def resolve_client_public_key(self, client):
        # Only asymmetric public keys: a symmetric ("oct") or private key in a registered JWKS is ignored.
        keys = [k for k in ((client.jwks or {}).get("keys") or [])
                if isinstance(k, dict) and k.get("kty") in ("RSA", "EC") and "d" not in k]
        if not keys:
            raise InvalidClientError(description="no public key is registered for this client")
        try:
            return KeySet.import_key_set({"keys": keys})
        except (JoseError, ValueError, TypeError):
            raise InvalidClientError(description="the client's registered keys cannot be used") from None


class FederationRefused(InvalidClientError):
    """invalid_client (401) for a federated assertion; its description says what failed once the token was shown to
    come from a trusted issuer (govern.broker.federation), and `reason` goes to the decision log."""

    def __init__(self, refused: AssertionRefused):
        super().__init__(description=refused.description, status_code=401)
        self.reason = refused.reason


class FederatedClientAuth:
    """The `federated` client authentication method: `client_id` names a federated user, `client_assertion` is a
    token of an issuer its trust names (RFC 7523 section 2.2 shape; docs/federation.md). Other clients are left to
    the next method (None). Limits first, then the address, then the token, as for every method."""

    def __init__(self, assertions: FederatedAssertions, guard: ClientAuthGuard, source_ip):
        self._assertions = assertions
        self._guard = guard
        self._source_ip = source_ip

    def __call__(self, query_client, request):
        data = request.form
        client_id, assertion = data.get("client_id"), data.get("client_assertion")
        if data.get("client_assertion_type") != ASSERTION_TYPE or not assertion or not client_id:
            return None
        address = self._source_ip()
        self._guard.before_attempt(client_id, address)
        client = query_client(client_id)
        if client is None or client.auth_method != FEDERATED or client.trust is None:
            return None  # not a federated user: private_key_jwt (or nothing) takes it, with its own refusals
        if not ip_in_ranges(address, client.cidrs):
            raise self._guard.failed(client_id, address, "source address outside ranges")
        try:
            self._assertions.verify(client.trust, assertion)
        except AssertionRefused as refused:
            self._guard.failed(client_id, address, f"federated assertion refused: {refused.reason}")
            raise FederationRefused(refused) from None
        return client


def assertion_audiences(settings) -> list[str]:
    """RFC 7523 section 3 item 3: the token endpoint URL identifies govern as the audience."""
    audiences = [settings.public_endpoint("/oauth/token"), settings.public_url, settings.issuer]
    return list(dict.fromkeys(a for a in audiences if a))


class GovernAuthorizationServer(AuthorizationServer):
    def __init__(self, services, source_ip, *, rate_limits, seen_assertions):
        super().__init__()
        # authlib logs issued tokens at debug level; govern never logs a token at any level.
        logging.getLogger("authlib").setLevel(logging.WARNING)
        self._services = services
        self.source_ip = source_ip
        self._query_client = self._load_client
        self._save_token = self._touch_user
        settings = services.settings
        self.token_url = settings.public_endpoint("/oauth/token")
        landscape = services.landscape
        guard = ClientAuthGuard(rate_limits, lambda: _active_ranges(landscape))
        self.register_grant(GovernClientCredentialsGrant)
        self.register_token_generator("client_credentials", self._generate)
        self.register_client_auth_method(CLIENT_SECRET_BASIC, authenticate_client_secret_basic(guard, source_ip))
        # One JWKS cache per process: issuers' keys are fetched once per TTL, not per token request.
        metrics = services.metrics
        self.jwks_cache = JwksCache(services.clock, on_fetch=None if metrics is None else (
            lambda issuer, outcome: metrics.federation_jwks_fetches.labels(issuer, outcome).inc()))
        federated = FederatedAssertions(self.jwks_cache, seen_assertions, services.clock,
                                        default_audience=self.token_url, leeway=settings.token_leeway_seconds,
                                        on_outcome=None if metrics is None else (
                                            lambda reason: metrics.federation_assertions.labels(reason).inc()))
        self.register_client_auth_method(FEDERATED, FederatedClientAuth(federated, guard, source_ip))
        self.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJwtAuth(
            assertion_audiences(settings), seen_assertions, services.clock, guard, source_ip,
            leeway=settings.token_leeway_seconds))

    def create_oauth2_request(self, request):
        """authlib's request, but its URI is the configured token URL, not one rebuilt from Host and scheme
        (a forged Host made authlib's transport check fail with a 500)."""
        return _TokenEndpointRequest(flask_request, self.token_url)

    def handle_error_response(self, request, error):
        if isinstance(error, FederationRefused):
            flask_g.oauth_refusal = f"federation:{error.reason}"  # the decision log's rule (api/oauth.py)
        elif error.error == "invalid_client":
            # RFC 6749 5.2: govern always names the scheme it accepts; one answer for every reason.
            error.status_code = 401
            error.description = REFUSED
        return super().handle_error_response(request, error)

    # --- clients ---------------------------------------------------------------------------------

    def _load_client(self, client_id):
        if not isinstance(client_id, str) or "\x00" in client_id:
            return None  # from a Basic header or an unverified assertion: no user is named so (PostgreSQL text has no NUL)
        services = self._services
        now = services.clock.now()
        with services.sessions() as s:
            user = s.execute(sa.select(IntegrationUser).where(IntegrationUser.external_id == client_id)).scalars().first()
            if user is None or user.status != "active":
                return None
            lifetimes = s.execute(
                sa.select(PermissionSet.max_token_lifetime_seconds).join(
                    Assignment, Assignment.permission_set_id == PermissionSet.id)
                .where(Assignment.integration_user_id == user.id)
                .where(sa.or_(Assignment.expires_at.is_(None), Assignment.expires_at >= now.date()))).scalars().all()
            return IntegrationClient(
                external_id=user.external_id, status=user.status, auth_method=user.client_auth_method,
                secret_hash=user.client_secret_hash, previous_secret_hash=user.previous_client_secret_hash,
                previous_secret_expires_at=user.previous_secret_expires_at, loaded_at=now,
                jwks=dict(user.jwks or {}), cidrs=tuple(user.allowed_cidrs or ()),
                allowed_scopes=tuple(user.allowed_scopes or ()),
                token_lifetime=min([services.settings.access_token_lifetime_seconds, *lifetimes]),
                trust=user.trust)

    def _touch_user(self, token, request):
        with session_scope(self._services.sessions) as s:
            # Bookkeeping no snapshot reads: it must not move the landscape version (govern.store.landscape_version).
            s.execute(sa.update(IntegrationUser).where(IntegrationUser.external_id == request.client.external_id)
                      .values(last_used_at=self._services.clock.now())
                      .execution_options(landscape_unchanged=True))

    # --- tokens ----------------------------------------------------------------------------------

    def _generate(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=False):
        services = self._services
        scopes = parse_scopes(scope) or tuple(sorted(client.allowed_scopes))
        now = int(services.clock.now().timestamp())
        lifetime = client.token_lifetime
        claims = {"iss": services.settings.issuer, "sub": client.external_id, "aud": AUDIENCE,
                  "iat": now, "nbf": now, "exp": now + lifetime, "jti": secrets.token_urlsafe(16),
                  "client_id": client.external_id, "scope": " ".join(scopes)}
        keys = services.signing_keys
        return {"access_token": keys.sign(claims), "token_type": "Bearer", "expires_in": lifetime,
                "scope": " ".join(scopes)}


class _TokenEndpointRequest(FlaskOAuth2Request):
    """authlib's Flask request with the configured token URL as its URI. authlib's constructor checks
    transport security on request.url, which is rebuilt from the Host header: a forged Host made that a
    500. Transport is govern's configuration instead (GOVERN_PUBLIC_URL must be https in production)."""

    def __init__(self, request, token_url: str):  # noqa: D107 - the attributes of OAuth2Request.__init__
        self.method = request.method
        self.uri = token_url
        self.headers = request.headers
        self._body = None
        self._request = request
        self.payload = FlaskOAuth2Payload(request)
        self.client = self.auth_method = self.user = None
        self.authorization_code = self.refresh_token = self.credential = self._scope = None


def _active_ranges(landscape) -> tuple[str, ...]:
    snapshot = landscape.current()
    return snapshot.derive("oauth.active_ranges", lambda: tuple(sorted(
        {c for u in snapshot.users.values() if u.status == "active" for c in u.cidrs})))


# --- the decision log's view of a token request ---------------------------------------------------

def claimed_client_id(authorization: str | None, form) -> str | None:
    """The client id the request claims (RFC 6749 section 2.3.1 Basic user name, the client_id field, or the
    private_key_jwt assertion's unverified `sub`), for the record only: it says who asked, not who was proven."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic" and value.strip():
        try:
            user, colon, _ = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        # Without the colon the whole value might be a secret sent alone: nothing is recorded then.
        return (unquote(user)[:200] or None) if colon else None
    if form.get("client_id"):
        return str(form.get("client_id"))[:200]
    assertion = form.get("client_assertion") or ""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        sub = claims.get("sub") if isinstance(claims, dict) else None
        return sub[:200] if isinstance(sub, str) and sub else None
    except (IndexError, ValueError, UnicodeDecodeError, binascii.Error):
        return None


def token_decision(status: int, body: dict, grant_type: str, requested_scope: str | None) -> dict:
    """Outcome and rules of a /oauth/token answer: allow (issued), deny (an RFC 6749 section 5.2 refusal),
    error (govern failed: server_error, temporarily_unavailable)."""
    requested = list(parse_scopes(requested_scope))
    grant_rule = f"grant:{grant_type or 'none'}"
    if status == 200:
        return {"allowed": True, "outcome": "allow", "rules": [f"permit:{grant_type}", grant_rule],
                "scopes_requested": requested, "scopes_granted": list(parse_scopes(body.get("scope"))),
                "upstream_status": None}
    raw_error = body.get("error")
    error = raw_error if isinstance(raw_error, str) else "invalid_request"
    if status >= 500:
        return {"allowed": True, "outcome": "error", "error_code": error[:100], "rules": [grant_rule],
                "scopes_requested": requested}
    return {"allowed": False, "outcome": "deny", "rules": [f"deny:{error[:80]}", grant_rule],
            "scopes_requested": requested}
