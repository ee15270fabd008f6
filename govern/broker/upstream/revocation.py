"""Offboarding that revokes upstream (issue #21, docs/offboarding.md): `govern offboard USER [--commit]`.

For each per-user principal of the integration user, govern revokes at the credential's `revocation_endpoint`
(RFC 7009: POST `token` and `token_type_hint`, with the credential's client authentication) the access tokens it
has cached for that principal and then its refresh token, forgets both, and marks the principal disconnected;
then it retires the user. A dry run (the default) reports the same items and changes nothing.

A revocation the provider cannot take now (5xx, 429, a timeout, no connection) is retried with backoff
(govern.domain.offboarding.retry_delays), then reported as failed, logged, sent as the alert
`alert.upstream_revocation_failed` and recorded as an `offboard` decision with outcome `error` (the metric
`govern_upstream_revocation_failures_total` counts those records). A refresh token whose revocation failed is
kept in the vault, so that running the command again retries it. Every item is a decision record; no token
value is ever in a record, a log line, an alert or the report.

The worker's revocation queue (govern.broker.upstream.revocation_queue) uses the same pieces: `Revoker.attempt`,
`revocation_target`, `cached_access_tokens`, `alert_failed` and `record_item`.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from govern.broker.upstream.errors import UpstreamNotConfigured
from govern.broker.upstream.http import HttpAnswer
from govern.broker.upstream.service import UpstreamTokens
from govern.broker.upstream.targets import Target, credential_token_settings
from govern.broker.upstream.token_cache import cache_key, open_token
from govern.domain import offboarding as O
from govern.errors import GovernError, UpstreamUnavailable
from govern.ports import OffboardRecords

log = logging.getLogger("govern.broker.offboard")
FAILED_EVENT = "alert.upstream_revocation_failed"
RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_SCOPES = 8  # cached tokens are looked up for every subset of the scopes a principal can be granted


def revocation_target(cred: O.OffboardCredential, principal: str, principal_id: int, subject: str | None) -> Target:
    """The credential's client authentication, aimed at its revocation endpoint (`revocation_client_auth` wins)."""
    return Target(named_credential="", credential=cred.external_id, protocol=cred.protocol,
                  token_url=cred.token_url, client_id=cred.client_id,
                  client_auth_method=cred.revocation_auth_method or cred.client_auth_method,
                  **credential_token_settings(cred.external_id, scopes=cred.scopes, audience=cred.audience,
                                              resource=cred.resource, token_params=cred.token_params,
                                              leeway_seconds=cred.leeway_seconds, rotation=cred.rotation),
                  header_name=None, principal=principal, principal_id=principal_id, subject=subject, timeout=10.0)


def cached_access_tokens(tokens: UpstreamTokens, named: list[str], principal: str,
                         scopes: list[str]) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """(named credential, scopes, access token) of every token govern has cached for the principal, once each."""
    cache, cipher, flight = tokens.tokens.cache, tokens.tokens.cipher, tokens.db_flight
    scopes = sorted(set(scopes))[:MAX_SCOPES]
    seen: set[str] = set()
    for nc in named:
        for size in range(len(scopes) + 1):
            for subset in itertools.combinations(scopes, size):
                key = cache_key(nc, principal, subset)
                for sealed in (cache.get(key), flight.sealed(key) if flight is not None else None):
                    token = open_token(cipher, key, sealed) if sealed else None
                    if token is not None and token.access_token.reveal() not in seen:
                        seen.add(token.access_token.reveal())
                        yield nc, subset, token.access_token.reveal()


def alert_failed(notify: Callable[[str, dict[str, Any]], None], *, credential: str | None, principal: str | None,
                 hint: str, attempts: int, detail: str) -> None:
    """A revocation that will not be retried: an error log line and the alert `alert.upstream_revocation_failed`."""
    log.error("upstream revocation failed", extra={
        "alert": "upstream_revocation_failed", "credential": credential, "principal": principal,
        "token_type": hint, "attempts": attempts, "detail": detail})
    notify(FAILED_EVENT, {"credential": credential, "principal": principal, "token_type": hint,
                          "attempts": attempts, "detail": detail, "runbook": "docs/offboarding.md"})


def record_item(decision_log, user: str | None, item: O.Item) -> None:
    """Each item is a decision (action `offboard`): done allow, failed error, skipped deny with its reason."""
    outcome = {O.DONE: "allow", O.FAILED: "error"}.get(item.outcome, "deny")
    rule = f"{'permit' if outcome != 'deny' else 'skip'}:{item.action}_{item.what}"
    try:
        decision_log.append(
            None, None, action="offboard", integration_user=user, named_credential=item.named_credential,
            principal=item.principal, resource_object=item.credential, allowed=outcome != "deny",
            outcome=outcome, rules=[rule], error_code="upstream_revocation_failed" if outcome == "error" else None,
            upstream_status=item.status)
    except GovernError as exc:  # the work is done; say loudly that its record is missing
        log.error("offboard: the decision could not be recorded", extra={"item": item.describe(), "error": exc.code})
        raise


class Revoker:
    """One RFC 7009 revocation, retried with backoff while the provider cannot take it."""

    def __init__(self, tokens: UpstreamTokens, *, delays: list[float] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.tokens = tokens
        self.delays = O.retry_delays() if delays is None else delays
        self.sleep = sleep

    def revoke(self, target: Target, url: str, token: str, hint: str) -> tuple[str, str, int, int | None]:
        """(outcome, detail, attempts, last HTTP status); outcome O.DONE or O.FAILED. `detail` names status codes,
        never the token."""
        detail, status = "", None
        for attempt, delay in enumerate([*self.delays, None], start=1):
            outcome, detail, status, retryable = self.attempt(target, url, token, hint)
            if outcome == O.DONE or not retryable:
                return outcome, detail, attempt, status
            if delay is None:
                break
            self.sleep(delay)
        return O.FAILED, f"{detail}; gave up after {len(self.delays) + 1} attempts", len(self.delays) + 1, status

    def attempt(self, target: Target, url: str, token: str, hint: str) -> tuple[str, str, int | None, bool]:
        """One RFC 7009 request: (outcome, detail, HTTP status, whether a later attempt may succeed)."""
        try:
            data, basic = self.tokens.client_authentication(target, [("token", token), ("token_type_hint", hint)])
            answer: HttpAnswer = self.tokens.http.post_form(url, data, basic_auth=basic, timeout=target.timeout)
        except UpstreamUnavailable:
            return O.FAILED, "the revocation endpoint did not answer in time or cannot be reached", None, True
        except UpstreamNotConfigured as exc:
            return O.FAILED, exc.detail or "not configured", None, False
        if answer.status == 200:  # RFC 7009 section 2.2: also for a token that was already invalid
            return O.DONE, "HTTP 200", 200, False
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        code = error if isinstance(error, str) and error.isidentifier() else None
        return O.FAILED, f"HTTP {answer.status}" + (f" ({code})" if code else ""), answer.status, answer.status in RETRYABLE


class OffboardService:
    def __init__(self, *, records: OffboardRecords, tokens: UpstreamTokens, decision_log, clock,
                 delete_secret: Callable[[str], None],
                 notify: Callable[[str, dict[str, Any]], None] | None = None, revoker: Revoker | None = None):
        self.records = records
        self.tokens = tokens
        self.decision_log = decision_log
        self.clock = clock
        self.delete_secret = delete_secret  # by secret reference name: the vault value, its reference and history
        self.notify = notify or (lambda event, payload: None)
        self.revoker = revoker or Revoker(tokens)

    # --- what there is ----------------------------------------------------------------------------------

    @staticmethod
    def _target(prin: O.OffboardPrincipal) -> Target:
        return revocation_target(prin.credential, prin.name, prin.id, prin.subject)

    def _cached(self, named: list[str], principal: str, scopes: list[str]) -> Iterator[tuple[str, tuple[str, ...], str]]:
        return cached_access_tokens(self.tokens, named, principal, scopes)

    # --- the run ------------------------------------------------------------------------------------------

    def run(self, user: str, *, commit: bool) -> O.Report:
        row = self.records.user(user)
        items: list[O.Item] = []
        for prin in row.principals:
            items.extend(self._principal(row, prin, commit))
        retire = O.Item(O.RETIRE, "integration_user")
        if row.status == "retired":
            retire = retire.finished(O.SKIPPED, "already retired")
        elif commit:
            before = self.records.retire(row.id, self.clock.now())
            retire = retire.finished(O.DONE, f"status {before} -> retired")
        else:
            retire = O.Item(O.RETIRE, "integration_user", detail=f"status {row.status} -> retired")
        items.append(retire)
        report = O.Report(user, commit, tuple(items))
        if commit:
            for item in report.items:
                self._record(user, item)
        return report

    def _principal(self, user: O.OffboardUser, prin: O.OffboardPrincipal, commit: bool) -> list[O.Item]:
        cred, named = prin.credential, list(prin.named_credentials)
        url = cred.revocation_url
        target = self._target(prin)
        base = O.Item(O.REVOKE, "access_token", credential=cred.external_id, principal=prin.name)
        items: list[O.Item] = []
        scopes = list(cred.scopes or ()) + list(user.allowed_scopes or ())
        for nc, subset, access in self._cached(named, prin.name, scopes):
            item = replace(base, named_credential=nc)
            if not url:
                items.append(item.finished(O.SKIPPED, "the credential declares no revocation_endpoint"))
            elif commit:
                items.append(self._revoke(item, target, url, access, "access_token"))
            else:
                items.append(item.finished(O.PLANNED, f"POST {url}"))
            forget = replace(item, action=O.DELETE)
            if commit:
                self.tokens.invalidate(nc, prin.name, subset)
                items.append(forget.finished(O.DONE, "dropped from govern's token cache"))
            else:
                items.append(forget.finished(O.PLANNED, "from govern's token cache"))
        stored = self.tokens.secrets.current(cred.external_id, prin.name, "refresh_token")
        if stored is not None:
            item = replace(base, what="refresh_token")
            if not url:
                item = item.finished(O.SKIPPED, "the credential declares no revocation_endpoint")
            elif commit:
                item = self._revoke(item, target, url, stored.value.reveal(), "refresh_token")
            else:
                item = item.finished(O.PLANNED, f"POST {url}")
            items.append(item)
            forget = replace(item, action=O.DELETE, outcome=O.PLANNED, detail="from the vault", attempts=0)
            if item.outcome == O.FAILED:
                forget = forget.finished(O.SKIPPED, "kept, so that running the command again retries the revocation")
            elif commit:
                self._delete_refresh_token(cred.external_id, prin.name)
                forget = forget.finished(O.DONE, "deleted from the vault")
            items.append(forget)
        disable = O.Item(O.DISABLE, "principal", credential=cred.external_id, principal=prin.name)
        if not prin.connected and stored is None:
            items.append(disable.finished(O.SKIPPED, "not connected"))
        elif commit:
            self.records.disconnect(prin.id)
            items.append(disable.finished(O.DONE, "disconnected"))
        else:
            items.append(disable.finished(O.PLANNED, "disconnect"))
        return items

    def _delete_refresh_token(self, credential: str, principal: str) -> None:
        name = self.records.refresh_token_ref(credential, principal)
        if name is not None:
            self.delete_secret(name)

    def _revoke(self, item: O.Item, target: Target, url: str, token: str, hint: str) -> O.Item:
        outcome, detail, attempts, status = self.revoker.revoke(target, url, token, hint)
        done = item.finished(outcome, detail, attempts, status)
        if outcome == O.FAILED:
            alert_failed(self.notify, credential=item.credential, principal=item.principal, hint=hint,
                         attempts=attempts, detail=detail)
        else:
            log.info("upstream token revoked", extra={"credential": item.credential, "principal": item.principal,
                                                      "token_type": hint})
        return done

    def _record(self, user: str, item: O.Item) -> None:
        record_item(self.decision_log, user, item)
