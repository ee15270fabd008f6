"""Connecting a principal: the authorization-code flow with PKCE (RFC 6749 section 4.1, RFC 7636 S256).

`start` makes the authorize URL. The state and the PKCE verifier stay on the server, sealed in the cache
for a short time (never in the browser), under a hash of the state. `finish` takes them back exactly once,
exchanges the code at the token endpoint (with the credential's client authentication), stores the refresh
token in the vault (SecretRef + SecretVersion, check-and-set), sets Principal.connected_at and clears
`needs_reconnect_at` (govern.broker.upstream.reconnect), with one "reconnected" alert if it was set.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from govern.broker.upstream.errors import UpstreamNotConfigured
from govern.broker.upstream.reconnect import clear_needs_reconnect
from govern.broker.upstream.secret_refs import CredentialSecrets
from govern.broker.upstream.service import UpstreamTokens
from govern.broker.upstream.targets import Target, credential_token_settings
from govern.domain.secret import Secret
from govern.errors import BadRequest, UpstreamError
from govern.domain import revocations as R
from govern.ports import Cache, Cipher, Clock, ConnectSubject, RevocationQueue, UpstreamPrincipals

CONNECT_TTL = 600  # seconds: the user has ten minutes to consent (RFC 6749 section 10.12 wants state short-lived)


@dataclass(frozen=True)
class Pending:
    """A started flow, as govern keeps it on the server: where it came from and who started it travel here,
    never in a query parameter (so a callback cannot be pointed anywhere else)."""

    credential: str
    principal: str
    verifier: str
    redirect_uri: str
    origin: str = "api"  # "api" (the API or the CLI) or "console"
    actor: str | None = None  # the admin who started it


@dataclass(frozen=True)
class Connected:
    credential: str
    principal: str
    integration_user: str | None = None  # a per-user principal's integration user
    origin: str = "api"
    actor: str | None = None


class ConnectService:
    def __init__(self, *, principals: UpstreamPrincipals, cache: Cache, cipher: Cipher, secrets: CredentialSecrets,
                 tokens: UpstreamTokens, clock: Clock, ttl: int = CONNECT_TTL,
                 revocations: RevocationQueue | None = None):
        self.principals = principals
        self.cache = cache
        self.cipher = cipher
        self.secrets = secrets  # CredentialSecrets
        self.tokens = tokens  # UpstreamTokens (its authenticated token_request)
        self.clock = clock
        self.ttl = ttl
        self.revocations = revocations  # the replaced refresh token is revoked by the worker (RFC 7009)

    def _load(self, credential: str, principal: str) -> ConnectSubject:
        return self.principals.connect_subject(credential, principal)  # NotFound for either

    def start(self, credential: str, principal: str, redirect_uri: str, *, login_hint: str | None = None,
              origin: str = "api", actor: str | None = None) -> dict:
        cred = self._load(credential, principal)
        if not cred.authorize_url or not cred.token_url or not cred.client_id:
            raise UpstreamNotConfigured(f"credential {credential!r} needs an authorize URL, a token URL and a client id")
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, inside RFC 7636's 43..128
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        pending = {"credential": credential, "principal": principal, "verifier": verifier, "redirect_uri": redirect_uri,
                   "origin": origin, "actor": actor}
        self.cache.set(_state_key(state), self.cipher.seal(json.dumps(pending).encode()), self.ttl)
        params = {"response_type": "code", "client_id": cred.client_id, "redirect_uri": redirect_uri, "state": state,
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        if cred.scopes:
            params["scope"] = " ".join(cred.scopes)
        if login_hint:
            params["login_hint"] = login_hint
        sep = "&" if "?" in cred.authorize_url else "?"
        return {"authorize_url": cred.authorize_url + sep + urlencode(params), "expires_in": self.ttl}

    def finish(self, state: str | None, code: str | None, error: str | None = None) -> Connected:
        return self.complete(self.claim(state), code, error)

    def claim(self, state: str | None) -> Pending:
        """Take the flow named by `state` back, exactly once (BadRequest if unknown, expired or used)."""
        if not state:
            raise BadRequest("the callback has no state")
        key = _state_key(state)
        sealed = self.cache.get(key)
        # One use only: the first callback to claim the state wins.
        if sealed is None or not self.cache.add(key + ":used", b"1", self.ttl):
            raise BadRequest("the connect request is unknown, expired or already used; start again")
        self.cache.delete(key)
        data = json.loads(self.cipher.open(sealed))
        return Pending(credential=data["credential"], principal=data["principal"], verifier=data["verifier"],
                       redirect_uri=data["redirect_uri"], origin=data.get("origin") or "api", actor=data.get("actor"))

    def complete(self, pending: Pending, code: str | None, error: str | None = None) -> Connected:
        """Exchange the code of a claimed flow and store the refresh token (RFC 6749 section 4.1.3)."""
        if error or not code:
            raise BadRequest("the upstream did not grant access" + (f" ({error})" if error and error.isidentifier() else ""))
        cred = self._load(pending.credential, pending.principal)
        settings = credential_token_settings(cred.credential, scopes=cred.scopes, audience=cred.audience,
                                             resource=cred.resource, token_params=cred.token_params,
                                             leeway_seconds=cred.leeway_seconds, rotation=cred.rotation)
        target = Target(named_credential="", credential=cred.credential, protocol=cred.protocol, token_url=cred.token_url,
                        client_id=cred.client_id, client_auth_method=cred.client_auth_method,
                        **settings, header_name=None, principal=cred.principal,
                        principal_id=cred.principal_id, subject=cred.subject, timeout=10.0)
        body = self.tokens.token_request(target, {"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": pending.redirect_uri,
                                                  "code_verifier": pending.verifier})
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise UpstreamError("the upstream granted access but issued no refresh token (offline access not allowed?)")
        current = self.secrets.current(cred.credential, cred.principal, "refresh_token")
        self.secrets.replace(cred.credential, cred.principal, "refresh_token", Secret(refresh),
                             expected_version=current.version if current else None)
        user_id = self.principals.mark_connected(cred.principal_id, self.clock.now())
        if current is not None and self.revocations is not None and current.value.reveal() != refresh:
            # Once the new token is stored, the one it replaced is of no use to govern: revoke that version.
            self.revocations.enqueue([R.RevocationRequest(
                cred.credential, cred.principal, R.REFRESH_TOKEN, R.REPLACED,
                {"path": current.path, "version": current.version, "forget": False}, user_id)])
        clear_needs_reconnect(self.principals, self.tokens.notify, self.clock.now(),
                              credential=cred.credential, principal=cred.principal)
        return Connected(cred.credential, cred.principal, user_id, origin=pending.origin, actor=pending.actor)


def _state_key(state: str) -> str:
    return "connect:" + hashlib.sha256(state.encode()).hexdigest()
