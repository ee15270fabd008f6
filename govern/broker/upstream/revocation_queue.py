"""The upstream revocation queue, worked by `govern worker` (issue #21, docs/offboarding.md).

When an apply retires or removes an integration user, a principal is disconnected, or a new connect replaces a
refresh token, the change queues what must be revoked (govern.ports.RevocationQueue) in its own transaction, so
no request waits on, or fails because of, a provider. `RevocationWorker.run` takes the due items: one RFC 7009
attempt each per pass (govern.broker.upstream.revocation.Revoker, the one `govern offboard` uses), backing off
between passes (govern.domain.revocations.next_delay). Revoked, govern forgets the token (the vault secret, the
cached access tokens). Each finished item is an `offboard` decision; the last failed attempt also alerts
(`alert.upstream_revocation_failed`) and leaves the item `failed` for `govern revocations` to show.

`disconnect_principal` is the disconnect service of the CLI, the API and (later) the console.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from govern.broker.upstream.revocation import (Revoker, alert_failed, cached_access_tokens, record_item,
                                               revocation_target)
from govern.broker.upstream.service import UpstreamTokens
from govern.domain import offboarding as O
from govern.domain import revocations as R
from govern.errors import GovernError
from govern.ports import Clock, RevocationQueue

log = logging.getLogger("govern.broker.revocations")


@dataclass(frozen=True)
class Worked:
    """One item's outcome in a worker pass: done, skipped, retrying (pending again) or failed."""

    item: R.QueuedRevocation
    status: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status in ("retrying", R.FAILED)


class RevocationWorker:
    def __init__(self, *, queue: RevocationQueue, tokens: UpstreamTokens, decision_log: Any, clock: Clock,
                 delete_secret: Callable[[str], None], notify: Callable[[str, dict[str, Any]], None] | None = None,
                 attempts: int = R.QUEUE_ATTEMPTS, batch: int = 50):
        self.queue = queue
        self.tokens = tokens
        self.decision_log = decision_log
        self.clock = clock
        self.delete_secret = delete_secret  # by secret reference name: the vault value, its reference and history
        self.notify = notify or (lambda event, payload: None)
        self.revoker = Revoker(tokens, delays=[])  # one attempt per pass: the backoff is between passes
        self.attempts = attempts
        self.batch = batch

    def run(self, now: dt.datetime | None = None) -> list[Worked]:
        now = now or self.clock.now()
        out = []
        for item in self.queue.claim_due(now, self.batch, R.CLAIM_LEASE_SECONDS):
            try:
                out.append(self._one(item, now))
            except GovernError as exc:  # the vault or the database is down: the item is due again after the lease
                log.error("revocation could not be attempted", extra={"item": item.id, "error": exc.code})
                out.append(Worked(item, "retrying", exc.code))
        return out

    # --- one item ---------------------------------------------------------------------------------------

    def _one(self, item: R.QueuedRevocation, now: dt.datetime) -> Worked:
        cred = self.queue.credential(item.credential) or _snapshot(item.location.get("credential"))
        if cred is None:
            return self._finish(item, now, R.FAILED, "the credential no longer exists; revoke at the provider by hand",
                                item.attempts, None, alert=True)
        found = self.queue.principal(item.credential, item.principal)
        prin_id, subject, connected_at = found if found is not None else (0, None, None)
        if item.token_type == R.REFRESH_TOKEN:
            return self._refresh_token(item, now, cred, prin_id, subject, connected_at)
        return self._access_tokens(item, now, cred, prin_id, subject)

    def _refresh_token(self, item, now, cred, prin_id, subject, connected_at) -> Worked:
        loc = item.location
        version = loc.get("version")
        store = self.tokens.secrets.store
        if version is None and connected_at is not None and connected_at > item.created_at:
            # Connected again since: the stored token is the new one (its replaced token has an item of its own).
            return self._finish(item, now, R.SKIPPED, "the principal was connected again since", item.attempts, None)
        stored = None
        if version is not None and store is not None:
            try:
                stored = store.get(loc["path"], version=int(version))
            except GovernError:
                stored = None
        elif version is None:
            latest = self.tokens.secrets.latest(item.credential, item.principal, R.REFRESH_TOKEN)
            stored = latest.value if latest is not None else None
        if stored is None:
            return self._finish(item, now, R.SKIPPED, "no longer stored", item.attempts, None)
        url = cred.revocation_url
        if not url:
            self._forget(item)
            return self._finish(item, now, R.SKIPPED, "the credential declares no revocation_endpoint"
                                + ("; deleted from the vault" if loc.get("forget") else ""), item.attempts, None)
        target = revocation_target(cred, item.principal, prin_id, subject)
        outcome, detail, status, retryable = self.revoker.attempt(target, url, stored.reveal(), R.REFRESH_TOKEN)
        if outcome == O.DONE:
            self._forget(item)
            return self._finish(item, now, R.DONE, detail + ("; deleted from the vault" if loc.get("forget") else ""),
                                item.attempts + 1, status)
        return self._failed(item, now, detail, status, retryable)

    def _access_tokens(self, item, now, cred, prin_id, subject) -> Worked:
        loc = item.location
        url = cred.revocation_url
        target = revocation_target(cred, item.principal, prin_id, subject)
        named, scopes = list(loc.get("named_credentials") or ()), list(loc.get("scopes") or ())
        revoked = 0
        for nc, subset, access in cached_access_tokens(self.tokens, named, item.principal, scopes):
            if url:
                outcome, detail, status, retryable = self.revoker.attempt(target, url, access, R.ACCESS_TOKEN)
                if outcome != O.DONE:
                    # The ones revoked are forgotten already; the next attempt sees only what is left.
                    return self._failed(item, now, detail, status, retryable)
                revoked += 1
            self.tokens.invalidate(nc, item.principal, subset)
        if not url:
            return self._finish(item, now, R.SKIPPED, "the credential declares no revocation_endpoint; "
                                "dropped from govern's token cache", item.attempts, None)
        if not revoked:
            return self._finish(item, now, R.SKIPPED, "no cached access token", item.attempts, None)
        return self._finish(item, now, R.DONE, f"{revoked} revoked and dropped from govern's token cache",
                            item.attempts + 1, 200)

    def _forget(self, item: R.QueuedRevocation) -> None:
        loc = item.location
        if loc.get("forget") and loc.get("secret_ref"):
            try:
                self.delete_secret(str(loc["secret_ref"]))
            except GovernError as exc:  # already deleted (NotFound) is fine; anything else is logged
                if exc.status != 404:
                    log.error("revoked, but the secret could not be deleted", extra={"item": item.id, "error": exc.code})

    def _forget_credential(self, item: R.QueuedRevocation) -> None:
        """A removed credential's own secrets go with its last item (kept while one may still need them)."""
        if self.queue.unfinished(item.credential, R.CREDENTIAL_REMOVED) or self.queue.credential(item.credential):
            return  # still needed, or a credential of the same id was applied again and the secrets are its own
        for name in item.location.get("credential_secrets") or ():
            try:
                self.delete_secret(str(name))
            except GovernError as exc:  # deleted already (404), or logged for the operator
                if exc.status != 404:
                    log.error("the removed credential's secret could not be deleted",
                              extra={"item": item.id, "error": exc.code})

    def _failed(self, item, now, detail, status, retryable) -> Worked:
        attempts = item.attempts + 1
        if retryable and attempts < self.attempts:
            wait = R.next_delay(attempts)
            log.warning("upstream revocation will be retried", extra={
                "credential": item.credential, "principal": item.principal, "token_type": item.token_type,
                "attempts": attempts, "detail": detail, "retry_in_seconds": wait})
            self.queue.finish(item.id, status=R.PENDING, attempts=attempts, detail=detail, last_status=status,
                              next_attempt_at=now + dt.timedelta(seconds=wait), now=now)
            return Worked(item, "retrying", f"{detail}; attempt {attempts} of {self.attempts}")
        if retryable:
            detail = f"{detail}; gave up after {attempts} attempts"
        return self._finish(item, now, R.FAILED, detail, attempts, status, alert=True)

    def _finish(self, item, now, status, detail, attempts, http_status, *, alert: bool = False) -> Worked:
        self.queue.finish(item.id, status=status, attempts=attempts, detail=detail, last_status=http_status,
                          next_attempt_at=None, now=now)
        if alert:
            alert_failed(self.notify, credential=item.credential, principal=item.principal, hint=item.token_type,
                         attempts=attempts, detail=detail)
        elif status == R.DONE:
            log.info("upstream token revoked", extra={"credential": item.credential, "principal": item.principal,
                                                      "token_type": item.token_type, "reason": item.reason})
        if status != R.FAILED and item.reason == R.CREDENTIAL_REMOVED:
            self._forget_credential(item)
        outcome = {R.DONE: O.DONE, R.FAILED: O.FAILED}.get(status, O.SKIPPED)
        record_item(self.decision_log, item.integration_user, O.Item(
            O.REVOKE, item.token_type, credential=item.credential, principal=item.principal).finished(
            outcome, detail, attempts, http_status))
        return Worked(item, status, detail)


def _snapshot(settings: Any) -> O.OffboardCredential | None:
    """A removed credential's settings, as queued with its items."""
    if not isinstance(settings, dict) or not settings:
        return None
    return O.OffboardCredential(**{**settings, "scopes": tuple(settings.get("scopes") or ()),
                                   "resource": tuple(settings.get("resource") or ())})


# --- disconnecting a principal ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Disconnect:
    credential: str
    principal: str
    committed: bool
    items: tuple[O.Item, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"credential": self.credential, "principal": self.principal, "committed": self.committed,
                "items": [i.as_dict() for i in self.items]}


def disconnect_principal(queue: RevocationQueue, clock: Clock, credential: str, principal: str, *,
                         commit: bool, actor: str) -> Disconnect:
    """Disconnect a principal: at once marked disconnected (needs reconnect: the broker stops using its refresh
    token), and the revocation of its tokens queued for the worker. A dry run (commit False) changes nothing.
    Raises NotFound for an unknown credential or principal."""
    if commit:
        was, requests = queue.disconnect(credential, principal, clock.now(), actor=actor)
    else:
        was, requests = queue.connected(credential, principal), queue.principal_requests(
            credential, principal, R.DISCONNECTED)
    state = O.DONE if commit else O.PLANNED
    items = [O.Item(O.REVOKE, r.token_type, credential=credential, principal=principal).finished(
        state, "queued for the worker" if commit else "queue for the worker") for r in requests]
    disable = O.Item(O.DISABLE, "principal", credential=credential, principal=principal)
    items.append(disable.finished(state, "disconnected" if commit else "disconnect") if was or requests
                 else disable.finished(O.SKIPPED, "not connected"))
    return Disconnect(credential, principal, commit, tuple(items))
