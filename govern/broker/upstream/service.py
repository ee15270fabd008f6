"""UpstreamTokens: govern.ports.UpstreamTokenSource, the broker's upstream half.

get_token(named credential, principal, scopes):
1. a fresh token in the (sealed) cache is returned at once;
2. otherwise ONE caller per (credential, principal, scopes), across threads and processes
   (single_flight.py), calls the upstream with the credential's grant, while the others wait for its
   result until a deadline (then 503 `upstream_token_wait_timeout`);
3. grants: client_credentials (RFC 6749 section 4.4), refresh_token (section 6), JWT bearer (RFC 7523
   section 2.1); client authentication client_secret_basic / client_secret_post (RFC 6749 section 2.3.1)
   or private_key_jwt (RFC 7523 section 2.2), trying the current secret and then, on invalid_client, the
   previous one while a rotation overlap lasts.

Refresh-token rotation (RFC 9700 section 4.14.2) and lost answers. Each refresh-token attempt is
journalled before the upstream is called; a new refresh token is written to the vault with
check-and-set before the access token is released; an answer without a refresh token keeps the stored
one. If the answer is lost (the connection dropped after the upstream rotated, or the worker died), the
attempt stays in doubt and govern still holds only the old refresh token. Nothing on govern's side can
recover a token it never received, so govern relies on the upstream's refresh-token grace period (Okta's
"grace period for token rotation", Auth0's "reuse interval"): the next lock holder sees the unresolved
attempt, retries with the stored token within the grace period, stores the token it gets and closes the
in-doubt attempts. The next holder comes within one refresh lease (a few seconds, single_flight.py), well
inside a typical 30 s grace. If the upstream has no grace period, that retry ends in `invalid_grant`: the
principal is marked needs-reconnect with one alert naming the in-doubt attempts (reconnect.py), and no
further upstream call is made for it until it is reconnected. Writing the upstream's raw answer somewhere
before parsing would not help: the answer that is lost is the one that never arrives.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from govern.broker.upstream.assertions import CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT, sign_assertion
from govern.broker.upstream import reconnect
from govern.broker.upstream.errors import (PrincipalNeedsReconnect, UpstreamInvalidClient, UpstreamInvalidGrant,
                                           UpstreamNotConfigured, UpstreamTimeout)
from govern.broker.upstream.http import TokenHttp, parse_token_response
from govern.broker.upstream.secret_refs import CredentialSecrets, StoredSecret
from govern.broker.upstream.single_flight import LocalLocks, RedisSingleFlight
from govern.broker.upstream.targets import Target
from govern.broker.upstream.token_cache import TokenCache, cache_key, is_fresh, open_token, same_token
from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.domain.token_request import leeway_too_large, refresh_leeway
from govern.broker.version_memo import VersionMemo
from govern.errors import GovernError, NotFound, SecretConflict, UpstreamUnavailable
from govern.ports import (FAILED, IN_DOUBT, SUCCEEDED, Cipher, Clock, LockNotAvailable, RefreshJournal, TokenRowLocks,
                          UpstreamPrincipals)

if TYPE_CHECKING:
    from govern.broker.landscape import LandscapeCache
    from govern.metrics import Metrics

log = logging.getLogger("govern.broker.upstream")

OAUTH_PROTOCOLS = ("oauth2_client_credentials", "oauth2_refresh_token", "oauth2_jwt_bearer")
DEFAULT_LIFETIME = 300  # seconds, when the upstream gives no expires_in (RFC 6749 section 5.1 only RECOMMENDS it)
# A cache miss should add little to the upstream's own latency: the landscape comes from the process's one
# snapshot (govern.broker.landscape), and client secrets are kept in memory for the snapshot's version, so a
# new secret version (which moves the stored landscape version) is a miss. Refresh tokens are never kept:
# they are read under the lock.


class UpstreamTokens:
    def __init__(self, *, principals: UpstreamPrincipals, landscape: LandscapeCache, secrets: CredentialSecrets,
                 token_cache: TokenCache, http: TokenHttp, clock: Clock, journal: RefreshJournal,
                 redis_flight: RedisSingleFlight | None = None, db_flight: TokenRowLocks | None = None,
                 poll_interval: float = 0.02, metrics: Metrics | None = None,
                 notify: Callable[[str, dict[str, Any]], None] | None = None):
        self.principals = principals  # the principals' needs-reconnect marks (govern.store.upstream_principals)
        self.landscape = landscape
        self.secrets = secrets
        self.tokens = token_cache
        self.http = http
        self.clock = clock
        self.journal = journal
        self.redis_flight = redis_flight
        self.db_flight = db_flight
        self.local = LocalLocks()
        self.poll_interval = poll_interval
        self.metrics = metrics  # govern.metrics.Metrics, or None
        self.notify = notify or (lambda event, payload: None)  # reconnect.safe_notifier(...) in production
        # Client secret candidates by (credential, field), for one landscape version (see VersionMemo).
        self._client_secrets: VersionMemo[tuple[str, str], list[StoredSecret]] = VersionMemo()

    def _target(self, named_credential: str, principal: str | None) -> Target:
        try:
            return self.landscape.current().upstream_target(named_credential, principal)
        except NotFound:  # created a moment ago by another process? look once more
            return self.landscape.recheck().upstream_target(named_credential, principal)

    # --- the port ---------------------------------------------------------------------------------------

    def get_token(self, named_credential: str, principal: str | None, scopes: tuple[str, ...] = (),
                  *, force_refresh: bool = False, rejected: str | None = None) -> UpstreamToken:
        """`rejected`: the access token the upstream just refused (a caller's `rejected_token`, the proxy's
        401). The cached token is replaced only while it is still that one, and that is checked again under
        the single-flight lock: of many requests that met the same refusal, one refreshes and the others
        get its result. `force_refresh` refreshes unless another caller stored a token since this call began."""
        scopes = tuple(sorted(set(scopes)))
        key = cache_key(named_credential, principal, scopes)
        started = self.clock.now()
        if self.landscape.current().needs_reconnect(named_credential, principal) and self._still_disconnected(
                named_credential, principal):
            # Disconnected (or refused upstream): not even a token govern still has cached is handed out.
            raise PrincipalNeedsReconnect(f"principal {principal or '-'!r} of {named_credential!r} is disconnected "
                                          "or its refresh token was refused; reconnect it")

        def usable(token: UpstreamToken | None) -> TypeGuard[UpstreamToken]:
            if token is None or (rejected is not None and same_token(token, rejected)):
                return False
            return not force_refresh or self._newer(token, started)

        if not force_refresh:
            token = self.tokens.get(key)
            if usable(token):
                return token
        target = self._target(named_credential, principal)
        if target.protocol not in OAUTH_PROTOCOLS:
            # A static secret (basic, API key, custom header) is never a token: only the proxy injects it.
            raise UpstreamNotConfigured(f"protocol {target.protocol!r} issues no tokens")
        deadline = self.clock.monotonic() + self._wait_budget(target)
        with self.local.hold(key, deadline - self.clock.monotonic()):
            token = self.tokens.get(key)
            if usable(token):
                return token
            if self.redis_flight is not None:
                return self._via_redis(key, target, scopes, deadline, usable)
            if self.db_flight is not None:
                return self._via_row_lock(key, target, scopes, deadline, usable)
            token = self._fetch(target, scopes)
            self.tokens.put(key, token)
            return token

    def invalidate(self, named_credential: str, principal: str | None, scopes: tuple[str, ...] = (),
                   *, token: str | None = None) -> None:
        """Forget the cached token (e.g. the upstream answered 401 with it). With `token` (the access token
        that was refused), only while the cache still holds that token: a newer one another request has
        stored meanwhile stays. Without Redis, other processes' in-memory copies live on until they expire;
        the shared row is cleared."""
        key = cache_key(named_credential, principal, tuple(sorted(set(scopes))))
        if token is None:
            self.tokens.delete(key)
            if self.db_flight is not None:
                self.db_flight.forget(key)
            return
        self.tokens.delete_if_holds(key, token)
        if self.db_flight is not None:
            self.db_flight.forget_if(key, lambda sealed: _holds(self.tokens.cipher, key, sealed, token))

    # --- single flight across processes ---------------------------------------------------------------

    def _wait_budget(self, target: Target) -> float:
        # one upstream call, one fallback secret, vault and database round trips
        return 2 * target.timeout + 5

    def _via_redis(self, key: str, target: Target, scopes: tuple[str, ...], deadline: float,
                   usable: Callable[[UpstreamToken | None], TypeGuard[UpstreamToken]]) -> UpstreamToken:
        redis_flight = self.redis_flight
        assert redis_flight is not None  # noqa: S101 - the caller checked
        while True:
            flight = redis_flight.try_acquire(key)
            if flight is not None:
                try:
                    with redis_flight.heartbeat(flight):
                        token = self.tokens.get(key)
                        if not usable(token):
                            token = self._fetch(target, scopes)
                            value, ttl = self.tokens.seal(key, token)
                            if not redis_flight.publish(flight, value, ttl):
                                log.warning("upstream token not cached: the refresh lease was lost during the call",
                                            extra={"named_credential": target.named_credential})
                            else:
                                self.tokens.remember(key, value, token)
                        return token
                finally:
                    redis_flight.release(flight)
            # Someone else is fetching: wait for their result, or for the lease to free up (a dead holder's
            # lease runs out within one lease).
            while redis_flight.is_locked(key):
                token = self.tokens.get(key)
                if usable(token):
                    return token
                if self.clock.monotonic() >= deadline:
                    raise UpstreamTimeout("timed out waiting for another process to fetch the upstream token")
                time.sleep(self.poll_interval)
            token = self.tokens.get(key)
            if usable(token):
                return token
            if self.clock.monotonic() >= deadline:
                raise UpstreamTimeout("timed out waiting for another process to fetch the upstream token")

    def _newer(self, token: UpstreamToken, since: dt.datetime) -> bool:
        fetched = token.extra.get("fetched_at")
        return isinstance(fetched, str) and bool(fetched) and dt.datetime.fromisoformat(fetched) >= since

    def _via_row_lock(self, key, target, scopes, deadline, usable) -> UpstreamToken:
        assert self.db_flight is not None  # noqa: S101 - the caller checked
        try:
            with self.db_flight.hold(key, deadline - self.clock.monotonic()) as flight:
                if flight.sealed:
                    token = open_token(self.tokens.cipher, key, flight.sealed)
                    if token is not None and is_fresh(token, self.clock.now(), self.tokens.leeway) and usable(token):
                        self.tokens.put(key, token)
                        return token
                token = self._fetch(target, scopes)
                value, _ = self.tokens.seal(key, token)
                flight.publish(value, token.expires_at)
        except LockNotAvailable:  # only the lock itself raises it (lock_timeout)
            raise UpstreamTimeout("timed out waiting for another process to fetch the upstream token") from None
        self.tokens.put(key, token)
        return token

    # --- grants -------------------------------------------------------------------------------------------

    def _fetch(self, target: Target, scopes: tuple[str, ...]) -> UpstreamToken:
        if not target.token_url:
            raise UpstreamNotConfigured(f"credential {target.credential!r} has no token URL")
        # Exactly the granted scopes (the decision's narrowing), never the credential's default scopes: a
        # fallback would widen an empty grant to whatever the credential may hold.
        if target.protocol == "oauth2_client_credentials":
            form = [("grant_type", "client_credentials"), *target.params.form(scopes)]
            body = self._call(target, form, client_auth_required=True)
        elif target.protocol == "oauth2_jwt_bearer":
            body = self._jwt_bearer_grant(target, scopes)
        else:
            body = self._refresh_token_grant(target, scopes)
        return self._token_from(target, body, scopes)

    def _token_from(self, target: Target, body: dict[str, Any], scopes: tuple[str, ...]) -> UpstreamToken:
        now = self.clock.now()
        try:
            lifetime = int(body.get("expires_in", DEFAULT_LIFETIME))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        granted = tuple(str(body["scope"]).split()) if body.get("scope") else scopes
        expires_at = now + dt.timedelta(seconds=lifetime)
        leeway = refresh_leeway(lifetime, target.leeway, max_leeway=self.tokens.leeway)
        if leeway_too_large(lifetime, leeway):
            log.warning("the refresh leeway leaves less than half of the upstream token's lifetime: most requests "
                        "will fetch a new token", extra={"named_credential": target.named_credential,
                                                         "credential": target.credential, "lifetime_seconds": lifetime,
                                                         "leeway_seconds": leeway})
        return UpstreamToken(access_token=Secret(body["access_token"]), token_type=str(body.get("token_type", "Bearer")),
                             expires_at=expires_at, scopes=granted,
                             extra={"fetched_at": now.isoformat(), "upstream_status": 200,
                                    "refresh_at": (expires_at - dt.timedelta(seconds=leeway)).isoformat()})

    def _jwt_bearer_grant(self, target: Target, scopes) -> dict[str, Any]:
        """RFC 7523 section 2.1: iss = client id, sub = the principal's upstream username, aud = audience or
        the token URL, signed with the principal's private key (or the credential's shared one)."""
        key = self.secrets.current(target.credential, target.principal, "private_key") if target.principal else None
        key = key or self.secrets.current(target.credential, None, "private_key")
        if key is None:
            raise UpstreamNotConfigured(f"credential {target.credential!r} has no private key in the vault")
        subject = target.subject or target.principal
        if not subject or not target.client_id:
            raise UpstreamNotConfigured(f"credential {target.credential!r} needs a client id and a principal subject")
        assertion = sign_assertion(key.value, issuer=target.client_id, subject=subject,
                                   audience=target.audience or _token_url(target), now=self.clock.now())
        form = [("grant_type", JWT_BEARER_GRANT), ("assertion", assertion), *target.params.form(scopes, audience=False)]
        return self._call(target, form, client_auth_required=False)

    def _still_disconnected(self, named_credential: str, principal: str | None) -> bool:
        """The snapshot says the principal needs a reconnect: ask its row before refusing. A reconnect made by
        another process (`govern secrets put`, the console) then counts at once, not only once the snapshot
        has caught up (up to its bound); one read, on the refusing path only."""
        target = self._target(named_credential, principal)
        return reconnect.needs_reconnect_since(self.principals, target.principal_id) is not None

    def _refresh_token_grant(self, target: Target, scopes) -> dict[str, Any]:
        principal = target.principal or "-"
        stored = self.secrets.current(target.credential, target.principal, "refresh_token")
        if stored is None:
            raise UpstreamNotConfigured(f"principal {principal!r} of {target.credential!r} is not connected")
        # Read fresh under the lock (not from the target memo): another process may have just marked it.
        if reconnect.needs_reconnect_since(self.principals, target.principal_id) is not None:
            raise PrincipalNeedsReconnect(f"the upstream refused the refresh token of principal {principal!r}; "
                                          "reconnect it")
        # We hold the single-flight lock: any unresolved attempt is not running any more, so it is in doubt.
        pending = self.journal.unresolved(target.credential, principal)
        if pending:
            log.warning("reconciling in-doubt refresh attempts", extra={
                "credential": target.credential, "principal": principal, "attempts": [p.attempt_id for p in pending]})
        attempt = self.journal.start(target.credential, principal, stored.version)
        form = [("grant_type", "refresh_token"), ("refresh_token", stored.value.reveal()),
                *target.params.form(scopes, audience=False)]
        try:
            body = self._call(target, form, client_auth_required=True)
        except UpstreamInvalidGrant:
            # Closed, every one: the attempts in doubt are answered too (their token is dead).
            self.journal.finish(attempt, FAILED, error="invalid_grant")
            self.journal.resolve([p.id for p in pending], FAILED, error="invalid_grant")
            if target.principal_id is not None:
                reconnect.mark_needs_reconnect(self.principals, self.notify, self.clock.now(),
                                               principal_id=target.principal_id, credential=target.credential,
                                               principal=principal, in_doubt=[p.attempt_id for p in pending])
            raise PrincipalNeedsReconnect(
                f"the upstream refused the refresh token of principal {principal!r}; reconnect it") from None
        except UpstreamUnavailable:
            # No answer, or a dropped connection: the upstream may have rotated the token.
            self.journal.finish(attempt, IN_DOUBT, error="no_answer")
            raise
        except GovernError as exc:
            self.journal.finish(attempt, FAILED, error=exc.code)
            raise
        except BaseException:
            self.journal.finish(attempt, IN_DOUBT, error="interrupted")
            raise
        new_version = self._store_rotated(target, stored, body.get("refresh_token"), attempt)
        self.journal.finish(attempt, SUCCEEDED, new_version=new_version)
        self.journal.resolve([p.id for p in pending], FAILED, error="reconciled")
        return body

    def _store_rotated(self, target: Target, stored: StoredSecret, new: Any, attempt: str) -> int | None:
        """Check-and-set the rotated refresh token into the vault, before the access token leaves govern.
        No new refresh token in the answer: the stored one stays (it is never wiped)."""
        if not isinstance(new, str) or not new or new == stored.value.reveal():
            return None
        try:
            return self.secrets.replace(target.credential, target.principal, "refresh_token", Secret(new),
                                        expected_version=stored.version)
        except SecretConflict:
            # Someone reconnected the principal meanwhile: their refresh token is newer than ours; keep it.
            log.warning("refresh token changed in the vault during a refresh; keeping the newer one",
                        extra={"credential": target.credential, "principal": target.principal})
            return None
        except GovernError:
            self.journal.finish(attempt, IN_DOUBT, error="vault_write_failed")
            raise

    # --- client authentication and the call -------------------------------------------------------------

    def _client_candidates(self, target: Target, *, fresh: bool = False) -> list[StoredSecret | None]:
        method = target.client_auth_method or "client_secret_basic"
        field = "private_key" if method == "private_key_jwt" else "client_secret"
        key = (target.credential, field)
        version = self.landscape.version
        if fresh:
            self._client_secrets.forget(key)
        found = self._client_secrets.get(version, key, lambda: self.secrets.candidates(target.credential, None, field))
        if len(found) > 1:
            # A previous version is in its rotation overlap, which ends with time, not with a write: not kept.
            self._client_secrets.forget(key)
        return list(found)

    def token_request(self, target: Target, form: dict[str, str]) -> dict[str, Any]:
        """One authenticated call to the credential's token endpoint (used by the connect flow's code exchange)."""
        return self._call(target, list(form.items()), client_auth_required=True)

    def client_authentication(self, target: Target, form: list[tuple[str, str]]):
        """`form` and the basic-auth pair of one call authenticated as the credential's client with its newest secret
        or key, for another endpoint of the same authorization server (RFC 7009 revocation, govern offboard)."""
        candidates = self._client_candidates(target, fresh=True) if target.client_id else []
        if not candidates:
            raise UpstreamNotConfigured(f"credential {target.credential!r} has no client id or no client secret")
        return self._authenticate(target, list(form), candidates[0])

    def _call(self, target: Target, form: list[tuple[str, str]], *, client_auth_required: bool) -> dict[str, Any]:
        tried: set[int] = set()
        for fresh in (False, True):
            candidates: list[StoredSecret | None] = (self._client_candidates(target, fresh=fresh)
                                                     if target.client_id else [])
            if not candidates:
                if client_auth_required:
                    raise UpstreamNotConfigured(f"credential {target.credential!r} has no client secret in the vault")
                candidates = [None]
            untried = [c for c in candidates if c is None or c.version not in tried]
            for index, secret in enumerate(untried):
                data, basic = self._authenticate(target, list(form), secret)
                answer = self.http.post_form(_token_url(target), data, basic_auth=basic, timeout=target.timeout)
                try:
                    body = parse_token_response(answer)
                    if secret is not None and secret is not candidates[0]:
                        self._previous_secret_used(target, secret, candidates[0])
                    return body
                except UpstreamInvalidClient:
                    if secret is None:
                        raise
                    tried.add(secret.version)
                    if index + 1 < len(untried):
                        log.info("upstream refused the current client secret; trying the previous one",
                                 extra={"credential": target.credential})
            if not untried:
                break
        raise UpstreamInvalidClient("the upstream refused govern's client authentication (invalid_client)")

    def _previous_secret_used(self, target: Target, used: StoredSecret, newest: StoredSecret | None) -> None:
        """The upstream refused the newest version and took an older one (within the rotation overlap): say so,
        loudly, so that a wrong new secret is noticed before the overlap ends."""
        log.warning("the upstream refused the newest client secret version and accepted the previous one; "
                    "check the new secret before the rotation overlap ends",
                    extra={"credential": target.credential, "used_version": used.version,
                           "refused_version": newest.version if newest else None})
        if self.metrics is not None:
            self.metrics.previous_secret_used.labels(credential=target.credential).inc()

    def _authenticate(self, target: Target, form: list[tuple[str, str]], secret: StoredSecret | None):
        if secret is None:
            return form, None
        if not target.client_id:  # _call authenticates only a credential with a client id
            raise UpstreamNotConfigured(f"credential {target.credential!r} has no client id")
        method = target.client_auth_method or "client_secret_basic"
        if method == "client_secret_basic":
            return form, (target.client_id, secret.value.reveal())
        if method == "client_secret_post":
            return form + [("client_id", target.client_id), ("client_secret", secret.value.reveal())], None
        if method == "private_key_jwt":
            assertion = sign_assertion(secret.value, issuer=target.client_id, subject=target.client_id,
                                       audience=_token_url(target), now=self.clock.now())
            return form + [("client_id", target.client_id), ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                           ("client_assertion", assertion)], None
        raise UpstreamNotConfigured(f"unknown client authentication method {method!r}")


def _token_url(target: Target) -> str:
    """The token URL, once _fetch has checked there is one."""
    if not target.token_url:
        raise UpstreamNotConfigured(f"credential {target.credential!r} has no token URL")
    return target.token_url


def _holds(cipher: Cipher, key: str, sealed: bytes | None, access_token: str) -> bool:
    token = open_token(cipher, key, sealed) if sealed else None
    return token is None or same_token(token, access_token)
