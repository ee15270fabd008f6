"""The runner on the fake store and the `static` rotator: staging, resumption, parking, dry run."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import select

from govern.rotation import machine
from govern.rotation.wiring import rotation_service
from govern.store.db import session_scope
from govern.store.tables import RotationRun, SecretRef, SecretVersion
from govern.domain.rotation import aware
from tests.rotation.conftest import T0, add_secret


def _versions(services, ref_id):
    with session_scope(services.sessions) as s:
        return {v.version: v.stage for v in s.execute(select(SecretVersion).where(SecretVersion.secret_ref_id == ref_id)).scalars()}


def _runs(services, ref_id=None):
    with session_scope(services.sessions) as s:
        stmt = select(RotationRun)
        if ref_id is not None:
            stmt = stmt.where(RotationRun.secret_ref_id == ref_id)
        return list(s.execute(stmt.order_by(RotationRun.id)).scalars())


def test_due_secret_rotates_through_the_four_steps(rsvc, clock):
    ref_id = add_secret(rsvc, "s1")
    svc = rotation_service(rsvc, worker_id="w1")
    outcomes = svc.tick()
    assert [o.status for o in outcomes] == ["finished"]
    (run,) = _runs(rsvc, ref_id)
    assert run.state == machine.FINISHED
    assert [s["step"] for s in run.steps] == ["create_pending", "set", "test", "finish"]
    assert all(s["outcome"] == "ok" and "duration_ms" in s for s in run.steps)
    assert _versions(rsvc, ref_id) == {1: "previous", 2: "current"}
    with session_scope(rsvc.sessions) as s:
        ref = s.get(SecretRef, ref_id)
        assert ref.current_version == 2
        assert aware(ref.next_due_at) == T0 + dt.timedelta(days=90)  # no rng: no jitter
    # not due any more: a second pass does nothing
    assert svc.tick() == []


def test_previous_version_is_revoked_after_the_overlap(rsvc, clock):
    ref_id = add_secret(rsvc, "s1", overlap=600)
    svc = rotation_service(rsvc, worker_id="w1")
    svc.tick()
    clock.advance(seconds=599)
    assert svc.revoke_expired() == []
    clock.advance(seconds=2)
    assert [o.status for o in svc.revoke_expired()] == ["revoked"]
    assert _versions(rsvc, ref_id) == {1: "revoked", 2: "current"}
    assert svc.revoke_expired() == []


class Crash(BaseException):
    """A simulated process death: not an Exception, so nothing in the runner catches it."""


@pytest.mark.parametrize("point", ["before_persist", "after_step"])
@pytest.mark.parametrize("crash_step", machine.STEPS)
def test_crash_at_any_step_is_resumed_by_the_next_worker(rsvc, clock, point, crash_step):
    ref_id = add_secret(rsvc, "s1")

    def hook(p, run_id, step):
        if p == point and step == crash_step:
            raise Crash()

    w1 = rotation_service(rsvc, worker_id="w1", hook=hook)
    with pytest.raises(Crash):
        w1.tick()
    w2 = rotation_service(rsvc, worker_id="w2")
    # The lease still holds: w2 must not touch the run yet.
    assert w2.drain() == []
    clock.advance(seconds=121)
    outcomes = w2.drain()
    (run,) = _runs(rsvc, ref_id)
    if point == "after_step" and crash_step == "finish":
        assert outcomes == []  # the finish was persisted: nothing left to do
    else:
        assert [o.status for o in outcomes] == ["finished"]
    assert run.state == machine.FINISHED
    assert _versions(rsvc, ref_id) == {1: "previous", 2: "current"}  # no stray version from the retry
    assert rsvc.secret_store.metadata("rotation-test/s1").version == 2


class FlakyRotator:
    name = "flaky"
    manual = False

    def __init__(self, fail_times, step="set"):
        self.fail_times = fail_times
        self.step = step
        self.calls = 0

    def create_pending(self, ctx):
        from govern.rotation.rotators.base import StaticSecretRotator

        return StaticSecretRotator().create_pending(ctx)

    def set(self, ctx):
        if self.step == "set":
            self.calls += 1
            if self.calls <= self.fail_times:
                raise RuntimeError("password=hunter2 target said no")  # text must never be recorded
        return True

    def test(self, ctx):
        return None

    def finish(self, ctx):
        return None

    def revoke_previous(self, ctx, version):
        return None


def test_backoff_then_recovery_sends_failed_and_recovered(rsvc, clock, notifier):
    ref_id = add_secret(rsvc, "s1", rotator="flaky")
    svc = rotation_service(rsvc, worker_id="w1", policy=machine.RetryPolicy(max_attempts=3, base_seconds=10))
    svc._rotators["flaky"] = FlakyRotator(fail_times=2)
    assert [o.status for o in svc.tick()] == ["retrying"]
    (run,) = _runs(rsvc, ref_id)
    assert run.state == machine.PENDING and run.attempts == 1
    assert aware(run.next_attempt_at) == T0 + dt.timedelta(seconds=10)
    assert "hunter2" not in (run.error or "") and run.error == "RuntimeError"
    assert svc.drain() == []  # backing off
    clock.advance(seconds=10)
    assert [o.status for o in svc.drain()] == ["retrying"]
    (run,) = _runs(rsvc, ref_id)
    assert aware(run.next_attempt_at) == clock.now() + dt.timedelta(seconds=20)  # exponential
    clock.advance(seconds=20)
    assert [o.status for o in svc.drain()] == ["finished"]
    assert notifier.names() == ["rotation.failed", "rotation.failed", "rotation.recovered"]
    assert "hunter2" not in repr(notifier.events)


def test_parked_after_max_attempts_then_retry(rsvc, clock, notifier):
    ref_id = add_secret(rsvc, "s1", rotator="flaky")
    svc = rotation_service(rsvc, worker_id="w1", policy=machine.RetryPolicy(max_attempts=2, base_seconds=1))
    flaky = FlakyRotator(fail_times=2)
    svc._rotators["flaky"] = flaky
    svc.tick()
    clock.advance(seconds=5)
    assert [o.status for o in svc.drain()] == ["parked"]
    (run,) = _runs(rsvc, ref_id)
    assert run.state == machine.PARKED and run.finished_at is not None
    assert notifier.names() == ["rotation.failed", "rotation.parked"]
    clock.advance(days=1)
    assert svc.tick() == []  # parked runs stay parked
    out = svc.retry(run.id, "ops")
    assert out.status == "finished"
    assert _versions(rsvc, ref_id) == {1: "previous", 2: "current"}



def test_one_active_run_per_secret(rsvc):
    ref_id = add_secret(rsvc, "s1")
    svc = rotation_service(rsvc, worker_id="w1")
    run_id, why = svc.start(ref_id)
    assert run_id and not why
    again, why = svc.start(ref_id, force=True)
    assert again is None and "already active" in why
    # the database guard holds even if the service check is bypassed
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with session_scope(rsvc.sessions) as s:
            s.add(RotationRun(secret_ref_id=ref_id, rotator="static", state=machine.CREATED, steps=[]))
