"""Rotation fixtures: a controllable clock, the fake or the real secret store, and a recording notifier."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.fakes.secret_store import MemorySecretStore

T0 = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)


class StepClock:
    def __init__(self, start: dt.datetime = T0):
        self.t = start

    def now(self) -> dt.datetime:
        return self.t

    def monotonic(self) -> float:
        return self.t.timestamp()

    def advance(self, **kw) -> None:
        self.t += dt.timedelta(**kw)


class RecordingNotifier:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def notify(self, event, payload):
        self.events.append((event, payload))

    def names(self):
        return [e for e, _ in self.events]


@pytest.fixture
def clock():
    return StepClock()


@pytest.fixture
def notifier():
    return RecordingNotifier()


def build(settings, clock, notifier, store=None, *, real_store: bool = False, **overrides):
    """Services for rotation tests: the in-memory fake store, or with `real_store` the product's store
    from the settings (the LocalSecretStore on the test database, shared by every process using it)."""
    from govern.bootstrap import build_services

    svc = build_services(settings, clock=clock, **overrides)
    if not real_store:
        svc.secret_store = store or MemorySecretStore()
    svc.notifier = notifier
    return svc


@pytest.fixture
def rsvc(settings, clock, notifier):
    svc = build(settings, clock, notifier)
    yield svc
    svc.close()


def add_secret(services, name: str, *, rotator: str = "static", owner_kind: str = "static", owner: str | None = None,
               schedule: str | None = "90d", due_at: dt.datetime | None = T0, overlap: int = 3600,
               initial: str | None = "initial-value-" + uuid.uuid4().hex) -> int:
    """A SecretRef with a first (current) version in the store."""
    from govern.domain.secret import Secret
    from govern.store.db import session_scope
    from govern.store.tables import SecretRef, SecretVersion

    path = f"rotation-test/{name}"
    version = None
    if initial is not None:
        version = services.secret_store.put(path, Secret(initial)).version
    with session_scope(services.sessions) as s:
        ref = SecretRef(external_id=name, owner_kind=owner_kind, owner=owner or name, field="secret", path=path,
                        current_version=version, rotator=rotator, schedule=schedule, overlap_seconds=overlap,
                        next_due_at=due_at)
        s.add(ref)
        s.flush()
        if version is not None:
            s.add(SecretVersion(secret_ref_id=ref.id, version=version, stage="current"))
        return ref.id
