"""Calls held during a maintenance window, delivered in order afterwards; calls that keep failing
move to a dead-letter queue (seed practices 10, 16 and 19).

`QueuedCalls.deliver(now)` is what a worker loop calls (through `deliver_queued`). Each named credential's calls go out in
the order they arrived; when one fails, the later ones of that credential wait for the next round so
that order holds. A call that has failed `max_attempts` times moves to `dead_letter`.
Every delivery is decided again, as the caller it came from: a call that is no longer allowed goes
straight to `dead_letter` with the deciding rule. A call that finds the daily budget used up waits for
the next day without counting an attempt.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from govern.domain.access import AccessRequest, Caller
from govern.broker.proxy.errors import BudgetExhausted, UpstreamUnreachable
from govern.errors import AccessDenied, GovernError, NotFound
from govern.broker.proxy.call import PROXY_PREFIX, ProxyResult, UpstreamOutcome, default_principal, raise_if_denied
from govern.broker.proxy.paths import join_under
from govern.broker.proxy.resource import salesforce_resource
from govern.broker.proxy.retry import may_retry
from govern.broker.proxy.maintenance import window_end
from govern.ports import Clock, PolicyDecider, ProxyQueueStore, QueuedCallRecord

if TYPE_CHECKING:
    from govern.broker.proxy.service import ProxyService

log = logging.getLogger("govern.proxy.queue")
MAX_ATTEMPTS = 5
BASE_DELAY = 30.0
MAX_DELAY = 3600.0
DELIVERY_ACTION = "proxy_delivery"  # the decision log's action for a queued call's delivery (decided again)


@dataclass(frozen=True)
class ItemOutcome:
    id: int
    ok: bool
    detail: str
    status: int | None = None


def enqueue(store: ProxyQueueStore, call, target, path: str, query: str, principal: str | None,
            not_before: dt.datetime) -> ProxyResult:
    """Persist the call (never its credential) and answer 202 with where to poll."""
    row_id = store.enqueue(QueuedCallRecord(
        id=0, named_credential=target.named_credential, system=target.system, caller=call.caller.integration_user,
        principal=principal, method=call.method.upper(), path=path, query=query, headers=dict(call.headers),
        body=call.body, correlation_id=call.correlation_id, idempotency_key=call.idempotency_key,
        source_ip=call.caller.source_ip, scopes=tuple(call.caller.scopes), attempts=0, next_attempt_at=not_before))
    location = f"{PROXY_PREFIX}/{target.named_credential}/queued/{row_id}"
    body = json.dumps({"id": row_id, "status": "queued", "deliver_after": not_before.isoformat(),
                       "location": location}).encode()
    log.info("call queued for after the maintenance window",
             extra={"queued_call": row_id, "named_credential": target.named_credential})
    return ProxyResult(202, {"Location": location, "Content-Type": "application/json"}, body)


class QueuedCalls:
    """Delivery of queued calls and the dead-letter queue, with the proxy that sends them, the decider that
    decides each delivery again, and the queue's store."""

    def __init__(self, proxy: ProxyService, decider: PolicyDecider, store: ProxyQueueStore, clock: Clock):
        self.proxy = proxy
        self.decider = decider
        self.store = store
        self.clock = clock

    def status(self, named_credential: str, caller: str, call_id: int) -> dict[str, Any]:
        row = self.store.queued(call_id)
        if row is None or row.named_credential != named_credential or row.caller != caller:
            dead = self.store.dead_letter_of(call_id)
            if dead is None or dead.named_credential != named_credential or dead.caller != caller:
                raise NotFound("no queued call with that id")
            return {"id": call_id, "status": "dead", "attempts": dead.attempts, "last_status": dead.last_status}
        return {"id": row.id, "status": row.status, "attempts": row.attempts, "response_status": row.response_status,
                "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "queued" and row.next_attempt_at
                else None}

    def _deliver_one(self, row: QueuedCallRecord) -> int:
        """One delivery of a queued call or dead letter; returns the upstream status, raises GovernError when it
        did not succeed (AccessDenied when the call is no longer allowed, BudgetExhausted when the day's budget
        is used up).

        The call is decided again first, as the caller it came from (its source address and token scopes as
        they were when it arrived): an integration user disabled, an assignment expired or a permission set
        narrowed while the call waited stops it here. The delivery is logged as a decision of its own, and
        counts against the system's daily budget like any proxied call."""
        proxy = self.proxy
        target = proxy.target(row.named_credential)
        method, headers = row.method, dict(row.headers)
        resource = salesforce_resource(method, row.path, row.query, row.body, headers.get("Content-Type"),
                                       base_url=target.url)
        caller = Caller(integration_user=row.caller, scopes=tuple(row.scopes or ()), source_ip=row.source_ip or "")
        request = AccessRequest(caller=caller, action="proxy", named_credential=row.named_credential, method=method,
                                path=unquote(row.path), resource_object=resource.object, fields=resource.fields,
                                api_type=target.api_type)
        outcome = UpstreamOutcome()
        decision = None
        started = time.perf_counter()
        try:
            decision = self.decider.decide(request)
            raise_if_denied(decision)
            principal = decision.principal or default_principal(target)
            admission = proxy.admit(target, decision.allow_budget_overdraft)
            url = join_under(target.url, row.path, row.query)
            response = proxy.exchange(target, method, url, headers, row.body, principal, row.correlation_id,
                                      retry_ok=may_retry(method, row.idempotency_key), outcome=outcome, admission=admission,
                                      budget_overdraft=decision.allow_budget_overdraft,
                                      scopes=decision.scopes_granted)
            status = response.status_code
            response.close()
        except BaseException as exc:
            proxy._log_decision(request, decision, outcome, started, row.correlation_id, error=exc,
                                action=DELIVERY_ACTION)
            raise
        failed = status >= 500 or status == 429
        proxy._log_decision(request, decision, outcome, started, row.correlation_id, action=DELIVERY_ACTION,
                            error=UpstreamUnreachable.code if failed else None)
        if failed:
            raise UpstreamUnreachable(f"{target.system} answered {status}")
        return status

    def _in_window(self, named_credential: str, now: dt.datetime) -> bool:
        target = self.proxy.target(named_credential)
        return window_end(target.maintenance_windows, now) is not None

    def deliver(self, now: dt.datetime | None = None, *, limit: int = 100) -> list[ItemOutcome]:
        """Deliver due queued calls in arrival order; report each item's outcome."""
        now = now or self.clock.now()
        outcomes: list[ItemOutcome] = []
        blocked: set[str] = set()
        with self.store.claim_due(limit) as due:
            for row in due.calls:
                if row.named_credential in blocked:
                    continue
                if (row.next_attempt_at is not None and row.next_attempt_at > now) or \
                        self._in_window(row.named_credential, now):
                    blocked.add(row.named_credential)  # keep the order: later calls wait for this one
                    continue
                attempts = row.attempts + 1
                try:
                    status = self._deliver_one(row)
                except AccessDenied as exc:
                    # No longer allowed: retrying cannot help. Kept in the dead-letter queue with the rule, so
                    # an operator sees it and can retry it once the permission is restored (`govern dlq retry`).
                    due.bury(row.id, exc.rule, attempts, now)
                    outcomes.append(ItemOutcome(row.id, False, f"refused at delivery ({exc.rule}); "
                                                               "moved to the dead-letter queue"))
                    continue
                except BudgetExhausted as exc:
                    # Not a failure of the call: it waits, with the later ones, until the budget resets.
                    wait = int(exc.headers.get("Retry-After", "60"))
                    due.retry_later(row.id, now + dt.timedelta(seconds=wait), exc.code, row.attempts)
                    blocked.add(row.named_credential)
                    outcomes.append(ItemOutcome(row.id, False, f"waiting {wait} s for the daily budget ({exc.code})"))
                    continue
                except GovernError as exc:
                    blocked.add(row.named_credential)
                    if attempts >= MAX_ATTEMPTS:
                        due.bury(row.id, exc.code, attempts, now)
                        outcomes.append(ItemOutcome(row.id, False, f"moved to the dead-letter queue ({exc.code})"))
                    else:
                        delay = min(MAX_DELAY, BASE_DELAY * 2 ** (attempts - 1))
                        due.retry_later(row.id, now + dt.timedelta(seconds=delay), exc.code, attempts)
                        outcomes.append(ItemOutcome(row.id, False, f"attempt {attempts} failed ({exc.code})"))
                    continue
                due.delivered(row.id, status, attempts, now)
                outcomes.append(ItemOutcome(row.id, True, f"delivered ({status})", status))
        for item in outcomes:
            log.info("queued call", extra={"queued_call": item.id, "ok": item.ok, "outcome": item.detail})
        return outcomes

    # --- the dead-letter queue ------------------------------------------------------------------------

    def dead_letters(self) -> list[QueuedCallRecord]:
        return self.store.dead_letters()

    def retry_dead(self, dead_id: int) -> ItemOutcome:
        """Deliver one dead letter now; on success it leaves the queue, on failure it stays (attempts + 1)."""
        with self.store.claim_dead(dead_id) as claim:
            if claim.call is None:
                return ItemOutcome(dead_id, False, "not found")
            try:
                status = self._deliver_one(claim.call)
            except GovernError as exc:
                reason = exc.rule if isinstance(exc, AccessDenied) else exc.code
                claim.failed(reason)
                return ItemOutcome(dead_id, False, f"failed again ({reason})")
            claim.delivered(status)
            return ItemOutcome(dead_id, True, f"delivered ({status})", status)

    def drop_dead(self, dead_id: int) -> ItemOutcome:
        if not self.store.drop_dead(dead_id):
            return ItemOutcome(dead_id, False, "not found")
        return ItemOutcome(dead_id, True, "dropped")


# --- entry points of the worker, `govern dlq` and the tests: they hand over the composition root's proxy's
# queued calls (services.proxy.queued), which do the work ---

def deliver_queued(queued: QueuedCalls, now: dt.datetime | None = None, *, limit: int = 100) -> list[ItemOutcome]:
    return queued.deliver(now, limit=limit)


def dlq_list(queued: QueuedCalls) -> list[QueuedCallRecord]:
    return queued.dead_letters()


def dlq_retry(queued: QueuedCalls, dead_id: int) -> ItemOutcome:
    return queued.retry_dead(dead_id)


def dlq_drop(queued: QueuedCalls, dead_id: int) -> ItemOutcome:
    return queued.drop_dead(dead_id)
