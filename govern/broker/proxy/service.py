"""The callout proxy: one call, from a parsed request to the upstream's answer (seed practices 2, 6, 9, 12, 19).

Order of the checks, each cheaper than the next and all before any upstream call:
named credential -> path (SSRF) -> the named credential's own method/path allowlist -> policy decision
-> maintenance window (refuse or queue) -> Idempotency-Key (replay, 409, 422) -> the system's bulkhead
(a slot among its concurrent calls, bulkhead.py) -> circuit breaker -> daily budget -> credential injection
-> the call, with retries -> breaker and idempotency bookkeeping.
Every decision is logged with the resource, the upstream status and the latency.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

from govern.broker.proxy.breaker import NOT_ADMITTED, Admission, CircuitBreakers, breaker_report
from govern.broker.proxy.call import (PROXY_PREFIX, ProxyCall, ProxyResult, UpstreamOutcome, default_principal,
                                      raise_if_denied)
from govern.broker.proxy.bulkhead import DEFAULT_LIMIT, Bulkheads
from govern.broker.proxy.budget import DailyBudget, MinuteRate
from govern.broker.proxy.errors import (BudgetExhausted, MaintenanceWindow, NamedCredentialForbids, SystemRateLimited,
                                        NamedCredentialNotFound, PathNotAllowed,
                                        UnsafeUpstreamRequest, UpstreamAnswerTooLarge, UpstreamRateLimited,
                                        UpstreamRedirectRefused, UpstreamTimeout, UpstreamUnreachable)
from govern.broker.proxy.headers import returnable_response_headers
from govern.broker.proxy.idempotency import IdempotencyStore, StoredResponse, fingerprint
from govern.broker.proxy.injection import CredentialInjector
from govern.broker.proxy.paths import check_query, join_under, normalise_path, path_matches, same_origin_under
from govern.broker.proxy.resource import IDEMPOTENT_METHODS, salesforce_resource
from govern.broker.proxy.retry import RETRYABLE_STATUS, may_retry, parse_retry_after
from govern.broker.proxy.targets import Target
from govern.broker.proxy.transport import (InvalidRequest, TransportBodyTooLarge, TransportTimeout,
                                           TransportUnreachable, Urllib3Transport)
from govern.domain.access import AccessDecision, AccessRequest
from govern.domain.maintenance import window_end
from govern.broker.proxy.queue import QueuedCalls, enqueue
from govern.errors import GovernError
from govern.logs import CORRELATION_HEADER
from govern.ports import (BreakerSettings, Cache, Clock, DecisionLog, Notifier, PolicyDecider, ProxyQueueStore)

if TYPE_CHECKING:
    from govern.broker.landscape import LandscapeCache
    from govern.metrics import Metrics

log = logging.getLogger("govern.proxy")
SMALL_BODY_BYTES = 64 * 1024  # upstream answers up to this size (by Content-Length) are read whole, not streamed


class UpstreamAnswer(Protocol):
    """What the proxy reads from an upstream answer; `close()` gives the connection back."""

    status_code: int
    headers: Any  # case-insensitive lookup: transport.Headers, or urllib3's HTTPHeaderDict

    @property
    def content(self) -> bytes: ...
    def iter_content(self, chunk: int = ...) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class Transport(Protocol):
    """The proxy's HTTP client: transport.Urllib3Transport (tests may hand in another)."""

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: float) -> UpstreamAnswer: ...
    def close(self) -> None: ...


@dataclass
class ProxyService:
    """Built by the composition root (govern.broker.proxy.build_proxy) with each collaborator by name."""

    landscape: LandscapeCache  # the process's one landscape snapshot: Targets come from it
    decider: PolicyDecider
    decision_log: DecisionLog
    injector: CredentialInjector
    queue: ProxyQueueStore  # calls held during a maintenance window, and dead letters
    breaker_settings: BreakerSettings  # each system's stored breaker setting, for breaker_states()
    cache: Cache  # breakers, budgets and idempotency keys, shared by every process
    clock: Clock
    notifier: Notifier | None = None  # budget alerts
    metrics: Metrics | None = None
    max_concurrent_calls: int = DEFAULT_LIMIT  # a system's bulkhead, unless its setting says otherwise
    transport: Transport = field(default_factory=Urllib3Transport)
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        self.breakers = CircuitBreakers(self.cache, self.clock)
        self.budget = DailyBudget(self.cache, self.clock, self.notifier)
        self.rate = MinuteRate(self.cache, self.clock)
        self.idempotency = IdempotencyStore(self.cache, sleep=lambda s: self.sleep(s))
        self.bulkheads = Bulkheads(self.max_concurrent_calls, metrics=self.metrics)
        self.queued = QueuedCalls(self, self.decider, self.queue, self.clock)

    def breaker_states(self) -> list[dict[str, Any]]:
        """Every system's circuit state, for the API and for metrics (`state` is closed, open or half_open)."""
        return breaker_report(self.breaker_settings, self.breakers)

    # --- the entry point ------------------------------------------------------------------------

    def target(self, name: str) -> Target:
        """The named credential's Target, from the process's one landscape snapshot (govern.broker.landscape)."""
        landscape = self.landscape
        try:
            return landscape.current().proxy_target(name)
        except NamedCredentialNotFound:  # created a moment ago by another process? look once more
            return landscape.recheck().proxy_target(name)

    def handle(self, call: ProxyCall) -> ProxyResult:
        target = self.target(call.named_credential)
        method = call.method.upper()
        try:
            path = normalise_path(call.raw_path)
            query = check_query(call.query)
            url = join_under(target.url, path, query)
            plain_path = unquote(path)
            if target.allowed_methods and method not in target.allowed_methods:
                raise NamedCredentialForbids(f"{target.named_credential} does not allow {method}")
            if target.allowed_paths and not any(path_matches(p, plain_path) for p in target.allowed_paths):
                raise NamedCredentialForbids(f"{target.named_credential} does not allow this path")
        except (PathNotAllowed, NamedCredentialForbids) as refusal:
            # Refused before policy: still a decision, so that auditors see SSRF attempts.
            request = AccessRequest(caller=call.caller, action="proxy", named_credential=target.named_credential,
                                    method=method, path=call.raw_path[:2000], api_type=target.api_type)
            self._log_decision(request, AccessDecision(False, (refusal.code,), reason=refusal.detail), UpstreamOutcome(),
                               time.perf_counter(), call.correlation_id)
            raise
        resource = salesforce_resource(method, path, query, call.body, call.headers.get("Content-Type"),
                                       base_url=target.url)
        request = AccessRequest(caller=call.caller, action="proxy", named_credential=target.named_credential,
                                method=method, path=plain_path, resource_object=resource.object,
                                fields=resource.fields, api_type=target.api_type)
        outcome = UpstreamOutcome()
        decision: AccessDecision | None = None
        started = time.perf_counter()
        try:
            decision = self.decider.decide(request)
            raise_if_denied(decision)
            result = self._allowed(call, target, method, path, query, url, decision, outcome)
        except BaseException as exc:
            self._log_decision(request, decision, outcome, started, call.correlation_id, error=exc)
            raise
        # The answer goes out only once its record is committed; if it cannot be, the call fails instead.
        try:
            self._log_decision(request, decision, outcome, started, call.correlation_id)
        except BaseException:
            close = getattr(result.body, "close", None)
            if close is not None:
                close()  # a streamed upstream answer: give its connection back
            raise
        return result

    def _log_decision(self, request, decision, outcome, started, correlation_id, *,
                      error: BaseException | str | None = None, action: str | None = None) -> None:
        """Record the decision (allow, deny, or error when the call failed after an allow); raises
        DecisionLogUnavailable when the record cannot be committed."""
        latency = round((time.perf_counter() - started) * 1000, 2)
        fields = {"upstream_status": outcome.upstream_status, "latency_ms": latency,
                  "correlation_id": correlation_id}
        if action is not None:
            fields["action"] = action
        if error is not None and decision is not None and decision.allowed:
            fields["error_code"] = error if isinstance(error, str) else (
                error.code if isinstance(error, GovernError) else "internal_error")
        self.decision_log.append(request, decision, **fields)

    # --- after an allow -------------------------------------------------------------------------

    def _allowed(self, call, target, method, path, query, url, decision, outcome) -> ProxyResult:
        principal = decision.principal or default_principal(target)
        end = window_end(target.maintenance_windows, self.clock.now())
        if end is not None:
            wait = int(math.ceil((end - self.clock.now()).total_seconds()))
            if target.during_maintenance == "queue":
                return enqueue(self.queue, call, target, path, query, principal, end)
            raise MaintenanceWindow(target.system, wait)

        keyed = bool(call.idempotency_key) and method not in IDEMPOTENT_METHODS
        fp = fingerprint(method, path, query, call.body) if keyed else ""
        caller = call.caller.integration_user
        if keyed:
            in_flight_ttl = target.timeout * target.retry.attempts + target.retry.max_retry_after + 30
            stored = self.idempotency.begin(caller, target.named_credential, call.idempotency_key, fp, in_flight_ttl)
            if stored is not None:
                return ProxyResult(stored.status, {**stored.headers, "Idempotent-Replayed": "true"}, stored.body,
                                   replayed=True)
        slot = None
        try:
            slot = self.bulkheads.acquire(target.system, target.max_concurrent_calls)
            admission = self.admit(target, decision.allow_budget_overdraft)
            response = self.exchange(target, method, url, call.headers, call.body, principal, call.correlation_id,
                                     retry_ok=may_retry(method, call.idempotency_key), outcome=outcome, admission=admission,
                                     budget_overdraft=decision.allow_budget_overdraft,
                                     scopes=decision.scopes_granted)
            # Every way of reading the answer ends by closing it (read whole, or streamed to the end or
            # closed by the server): that is when the slot is given back.
            response = _ReleasingResponse(response, slot)
        except BaseException:
            if slot is not None:
                slot.release()
            if keyed:
                self.idempotency.release(caller, target.named_credential, call.idempotency_key)
            raise
        headers = self._response_headers(target, response)
        if keyed:
            try:
                body, rest = _read_up_to(target, response, self.idempotency.max_body)
            except BaseException:
                self.idempotency.release(caller, target.named_credential, call.idempotency_key)
                raise
            if rest is not None:
                # Too large to keep for a day in the shared store: release the key, pass the answer through.
                self.idempotency.release(caller, target.named_credential, call.idempotency_key)
                return ProxyResult(response.status_code, headers, rest)
            if response.status_code < 500:
                self.idempotency.finish(caller, target.named_credential, call.idempotency_key, fp,
                                        StoredResponse(response.status_code, headers, body))
            else:
                self.idempotency.release(caller, target.named_credential, call.idempotency_key)
            return ProxyResult(response.status_code, headers, body)
        length = response.headers.get("Content-Length", "")
        if method != "HEAD" and length.isdigit() and int(length) <= SMALL_BODY_BYTES:
            # A small answer is read at once: the connection goes back to the pool before the caller reads,
            # and the server sends one buffer with a Content-Length instead of iterating a stream.
            return ProxyResult(response.status_code, headers, _read_all(target, response))
        return ProxyResult(response.status_code, headers, _stream(response))

    # --- the upstream exchange, with retries ----------------------------------------------------

    def exchange(self, target: Target, method: str, url: str, headers: dict[str, str], body: bytes,
                 principal: str | None, correlation_id: str, *, retry_ok: bool, outcome: UpstreamOutcome | None = None,
                 admission: Admission = NOT_ADMITTED, budget_overdraft: bool = False, scopes: tuple[str, ...] = ()):
        """Send, retrying per the named credential's policy; returns the final response (open).

        The first attempt has been counted against the daily budget by the caller; every further upstream
        call (a retry, the retry after a refresh, a followed redirect) is counted here, and when the budget
        is used up the exchange stops where it is instead of retrying."""
        outcome = outcome or UpstreamOutcome()
        policy = target.retry
        attempt = 0
        refused: str | None = None  # the bearer token the upstream answered 401 to
        redirects = 0
        while True:
            try:
                credential = self.injector.headers(target, principal, scopes, rejected=refused)
            except GovernError:
                if admission.probe:  # the probe never reached the upstream: let the next call probe
                    self.breakers.release_probe(target.system)
                raise
            sent = {**headers, CORRELATION_HEADER: correlation_id, **credential}
            try:
                response = self.transport.send(method, url, sent, body, target.timeout)
            except InvalidRequest as exc:
                if admission.probe:  # nothing reached the upstream: let the next call probe
                    self.breakers.release_probe(target.system)
                raise UnsafeUpstreamRequest(str(exc)) from None
            except (TransportTimeout, TransportUnreachable) as exc:
                if retry_ok and attempt + 1 < policy.attempts and self._charge(target, budget_overdraft):
                    self.sleep(policy.delay(attempt, self.random))
                    attempt += 1
                    continue
                self.breakers.record_failure(target.system, target.breaker, admission)
                if isinstance(exc, TransportTimeout):
                    raise UpstreamTimeout(f"{target.system} did not answer within {target.timeout:g} s") from None
                raise UpstreamUnreachable(f"{target.system} cannot be reached") from None
            status = response.status_code
            outcome.upstream_status = status
            if status == 401 and refused is None and target.protocol.startswith("oauth2"):
                # An expired or revoked token: invalidate it, refresh once, retry once (budget permitting;
                # without budget the 401 goes back, and the next call starts with a fresh token). By token
                # identity: only that token is dropped and replaced, so of many calls that met the same 401
                # one refreshes and the others retry with its result.
                refused = _bearer(credential) or ""
                self.injector.invalidate(target, principal, scopes, refused=refused or None)
                if self._charge(target, budget_overdraft):
                    response.close()
                    continue
            if status == 401 and not target.protocol.startswith("oauth2"):
                self.injector.invalidate(target, principal)  # a stale static secret: re-read it next time
            if status == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
                wait = policy.delay(attempt, self.random) if wait is None else wait
                response.close()
                if (retry_ok and attempt + 1 < policy.attempts and wait <= policy.max_retry_after
                        and self._charge(target, budget_overdraft)):
                    self.sleep(wait)
                    attempt += 1
                    continue
                self.breakers.record_success(target.system, admission)  # it answered: the system is up
                raise UpstreamRateLimited(target.system, int(math.ceil(max(wait, 1))))
            if (status in RETRYABLE_STATUS and retry_ok and attempt + 1 < policy.attempts
                    and self._charge(target, budget_overdraft)):
                response.close()
                self.sleep(policy.delay(attempt, self.random))
                attempt += 1
                continue
            if 300 <= status < 400 and response.headers.get("Location"):
                location = response.headers["Location"]
                if not same_origin_under(target.url, location):
                    response.close()
                    self.breakers.record_success(target.system, admission)
                    raise UpstreamRedirectRefused(f"{target.system} redirected outside the named credential")
                if redirects < policy.redirects and self._charge(target, budget_overdraft):
                    response.close()
                    url = urljoin(url, location)
                    redirects += 1
                    if status == 303:
                        method, body = "GET", b""
                    continue
            if status >= 500:
                self.breakers.record_failure(target.system, target.breaker, admission)
            else:
                self.breakers.record_success(target.system, admission)
            return response

    def admit(self, target: Target, overdraft: bool) -> Admission:
        """Before the first upstream attempt: the system's breaker, its rate per minute, then its daily budget
        (an open breaker or a used-up rate costs no budget). Returns the breaker's admission (whether this call
        is the half-open probe)."""
        admission = self.breakers.before_call(target.system, target.breaker)
        try:
            self._count(target, overdraft)
        except GovernError:
            if admission.probe:
                self.breakers.release_probe(target.system)
            raise
        return admission

    def _charge(self, target: Target, overdraft: bool) -> bool:
        """Count one more upstream call against the system's rate and daily budget; False when either is used
        up (the exchange then stops where it is instead of retrying)."""
        try:
            self._count(target, overdraft)
        except (BudgetExhausted, SystemRateLimited):
            return False
        return True

    def _count(self, target: Target, overdraft: bool) -> None:
        """One upstream call against the rate, then the budget; a call the budget refuses is not left counted
        in the minute's rate (it is not made)."""
        counted = self.rate.consume(target.system, target.rate_limit_per_minute)
        try:
            self.budget.consume(target.system, target.daily_api_budget, overdraft=overdraft)
        except BudgetExhausted:
            self.rate.give_back(counted)
            raise

    def _response_headers(self, target: Target, response) -> dict[str, str]:
        headers = returnable_response_headers(response.headers)
        location = response.headers.get("Location")
        if location and same_origin_under(target.url, location):
            absolute = urlsplit(urljoin(target.url.rstrip("/") + "/", location))
            rest = absolute.path[len(urlsplit(target.url).path.rstrip("/")):].lstrip("/")
            headers["Location"] = f"{PROXY_PREFIX}/{target.named_credential}/proxy/{rest}" + (
                f"?{absolute.query}" if absolute.query else "")
        return headers


def _bearer(credential: dict[str, str]) -> str | None:
    scheme, _, value = credential.get("Authorization", "").partition(" ")
    return value if scheme == "Bearer" and value else None


def _read_all(target: Target, response) -> bytes:
    try:
        with _transport_errors(target):
            return response.content
    finally:
        response.close()


class _transport_errors:
    """The transport's failures while an answer is read, as the proxy's problems."""

    def __init__(self, target: Target):
        self.target = target

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        system = self.target.system
        if kind is not None and issubclass(kind, TransportTimeout):
            raise UpstreamTimeout(f"{system} did not finish its answer within {self.target.timeout:g} s") from None
        if kind is not None and issubclass(kind, TransportUnreachable):
            raise UpstreamUnreachable(f"{system} broke off its answer") from None
        if kind is not None and issubclass(kind, TransportBodyTooLarge):
            raise UpstreamAnswerTooLarge(f"{system} answered more than govern decodes") from None
        return False


def _read_up_to(target: Target, response, limit: int) -> tuple[bytes, Iterable[bytes] | None]:
    """The whole answer if it has at most `limit` bytes (None for the rest); else what was read and a stream of
    all of it, which closes the response at its end."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        return b"", _stream(response)
    read, size = [], 0
    try:
        with _transport_errors(target):
            parts = response.iter_content()
            for part in parts:
                read.append(part)
                size += len(part)
                if size > limit:
                    return b"", _stream(response, first=read, parts=parts)
    except BaseException:
        response.close()
        raise
    response.close()
    return b"".join(read), None


class _ReleasingResponse:
    """The upstream response, whose close() also gives back the call's bulkhead slot (once)."""

    def __init__(self, response, slot):
        self._response = response
        self._slot = slot

    def __getattr__(self, name):
        return getattr(self._response, name)

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._slot.release()


class _Stream:
    """A streamed answer that closes the upstream response when it is read to the end, or when the WSGI
    server closes it, even if the client left before the first chunk (a generator that never started
    would not run its `finally`, and would keep the connection and the bulkhead slot)."""

    def __init__(self, chunks: Generator[bytes, None, None], response):
        self._chunks = chunks
        self._response = response

    def __iter__(self) -> Generator[bytes, None, None]:
        return self._chunks

    def close(self) -> None:
        self._chunks.close()
        self._response.close()


def _stream(response, chunk: int = 64 * 1024, *, first: Sequence[bytes] = (), parts=None) -> _Stream:
    return _Stream(_chunks(response, chunk, first=first, parts=parts), response)


def _chunks(response, chunk: int, *, first: Sequence[bytes] = (), parts=None) -> Generator[bytes, None, None]:
    try:
        yield from first
        try:
            yield from (parts if parts is not None else response.iter_content(chunk))
        except TransportBodyTooLarge:
            # The head is sent: all that is left is to break the answer off (the caller sees it incomplete).
            log.warning("upstream answer too large once decoded; broken off")
            raise
    finally:
        response.close()
