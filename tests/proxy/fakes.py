"""Small fakes for the broker seams the proxy uses (the authz and upstream helpers build the real ones)."""
from __future__ import annotations

import datetime as dt
import threading

from govern.domain.access import AccessDecision, Caller, UpstreamToken
from govern.domain.secret import Secret
from govern.errors import SecretStoreUnavailable, Unauthorized


class FakeClock:
    def __init__(self, now: dt.datetime | None = None):
        self._now = now or dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)  # a Tuesday

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self._now = when


class FakeAuthenticator:
    """`Authorization: Bearer caller-<integration user>` authenticates that user."""

    def authenticate(self, authorization, peer_ip, forwarded_for):
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.startswith("caller-"):
            raise Unauthorized("a govern access token is required")
        return Caller(integration_user=value[len("caller-"):], scopes=("orders.read",), source_ip=peer_ip)


class FakeDecider:
    def __init__(self):
        self.requests = []
        self.allow = True
        self.overdraft = False
        self.principal = "default"

    def decide(self, request):
        self.requests.append(request)
        if not self.allow:
            return AccessDecision(False, ("forbid-test",), reason="denied by the test")
        return AccessDecision(True, ("order-sync-ps",), principal=self.principal,
                              allow_budget_overdraft=self.overdraft)


class FakeDecisionLog:
    def __init__(self):
        self.records = []

    def append(self, request, decision, **fields):
        self.records.append({"request": request, "decision": decision, **fields})


class FakeTokenSource:
    """Issues `upstream-token-N`; caches one per (credential, principal) until invalidated."""

    def __init__(self):
        self.issued = 0
        self.invalidations = []
        self.cached: dict = {}
        self.store_down = False
        self._lock = threading.Lock()

    def get_token(self, named_credential, principal, scopes=(), *, force_refresh=False, rejected=None):
        key = (named_credential, principal)
        with self._lock:
            held = self.cached.get(key)
            if held is not None and not force_refresh and held.access_token.reveal() != rejected:
                return held
            if self.store_down:
                raise SecretStoreUnavailable("the (fake) secret store is down")
            self.issued += 1
            token = UpstreamToken(Secret(f"upstream-token-{self.issued}"), "Bearer",
                                  dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
            self.cached[key] = token
            return token

    def invalidate(self, named_credential, principal, scopes=(), *, token=None):
        with self._lock:
            self.invalidations.append((named_credential, principal))
            held = self.cached.get((named_credential, principal))
            if held is not None and (token is None or held.access_token.reveal() == token):
                del self.cached[(named_credential, principal)]


class RecordingNotifier:
    def __init__(self):
        self.events = []

    def notify(self, event, payload):
        self.events.append((event, payload))
