"""Signed alert webhooks, and schedules: intervals, cron, jitter, the per-system concurrency cap."""
from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from govern.errors import ValidationFailed
from govern.rotation import machine, schedule
from govern.notify import WebhookNotifier, verify
from govern.rotation.wiring import rotation_service
from govern.store.db import session_scope
from govern.store.rotation_tables import RotationSystemCap
from tests.rotation.conftest import T0, add_secret
from tests.rotation.http_recorder import Recorder
from tests.rotation.test_runner_static import FlakyRotator


def test_parked_run_alerts_through_a_signed_webhook(rsvc, clock):
    with Recorder() as hook:
        notifier = WebhookNotifier(hook.url + "/alerts", "whsec-test")
        add_secret(rsvc, "s1", rotator="flaky")
        svc = rotation_service(rsvc, worker_id="w1", notifier=notifier,
                              policy=machine.RetryPolicy(max_attempts=2, base_seconds=1))
        svc._rotators["flaky"] = FlakyRotator(fail_times=5)
        svc.tick()
        clock.advance(seconds=2)
        (o,) = svc.drain()
        assert o.status == "parked"
    events = []
    for req in hook.requests:
        ts, sig = req["headers"]["X-Govern-Timestamp"], req["headers"]["X-Govern-Signature"]
        assert sig.startswith("sha256=") and verify("whsec-test", ts, req["body"], sig)
        assert not verify("another-secret", ts, req["body"], sig)
        assert not verify("whsec-test", str(int(ts) + 1), req["body"], sig)  # the timestamp is signed too
        events.append(json.loads(req["body"]))
    assert [e["event"] for e in events] == ["rotation.failed", "rotation.parked"]
    assert req["headers"]["X-Govern-Event"] == "rotation.parked"
    parked = events[1]["payload"]
    assert parked["secret_ref"] == "s1" and parked["attempts"] == 2 and parked["step"] == "set"
    assert "hunter2" not in json.dumps(events)


def test_webhook_failure_never_breaks_the_run(rsvc):
    notifier = WebhookNotifier("http://127.0.0.1:9/unreachable", "x", timeout=0.5)
    add_secret(rsvc, "s1", rotator="flaky")
    svc = rotation_service(rsvc, worker_id="w1", notifier=notifier)
    svc._rotators["flaky"] = FlakyRotator(fail_times=1)
    (o,) = svc.tick()
    assert o.status == "retrying"


def test_interval_and_cron_schedules_in_utc():
    after = dt.datetime(2026, 1, 31, 10, 30, tzinfo=dt.UTC)
    assert schedule.next_due("90d", after) == after + dt.timedelta(days=90)
    assert schedule.next_due("12h", after) == after + dt.timedelta(hours=12)
    assert schedule.next_due("0 3 1 * *", after) == dt.datetime(2026, 2, 1, 3, 0, tzinfo=dt.UTC)
    cet = dt.timezone(dt.timedelta(hours=1))
    assert schedule.next_due("0 3 * * *", after.astimezone(cet)) == dt.datetime(2026, 2, 1, 3, 0, tzinfo=dt.UTC)
    for bad in ("0d", "soon", "61 * * * *"):
        with pytest.raises(ValidationFailed):
            schedule.next_due(bad, after)


def test_jitter_is_bounded_and_injected():
    after = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    class Max:
        def uniform(self, a, b):
            return b

    assert schedule.next_due("1h", after, Max()) == after + dt.timedelta(hours=1, minutes=6)  # 10% of the period
    assert schedule.next_due("90d", after, Max()) == after + dt.timedelta(days=90, hours=1)  # at most an hour
    r1, r2 = random.Random(7), random.Random(7)
    assert schedule.next_due("30d", after, r1) == schedule.next_due("30d", after, r2)


def test_finished_rotation_is_rescheduled_with_jitter(rsvc):
    add_secret(rsvc, "s1", schedule="1d")

    class Half:
        def uniform(self, a, b):
            return b / 2

    rotation_service(rsvc, worker_id="w1", rng=Half()).tick()
    from govern.domain.rotation import aware
    from govern.store.tables import SecretRef

    with session_scope(rsvc.sessions) as s:
        ref = s.query(SecretRef).one()
    assert aware(ref.next_due_at) == T0 + dt.timedelta(days=1, seconds=3600 / 2)


def test_per_system_cap_keeps_rotations_on_one_system_apart(rsvc, clock):
    # Three secrets of the same system, and a manual-style rotator that holds its run open.
    for name in ("a", "b", "c"):
        add_secret(rsvc, name, rotator="flaky", owner_kind="pg", owner="server-1")
    add_secret(rsvc, "other", rotator="flaky", owner_kind="pg", owner="server-2")
    svc = rotation_service(rsvc, worker_id="w1")
    flaky = svc._rotators["flaky"] = FlakyRotator(fail_times=100)  # runs stay active, backing off
    out = {o.secret: o for o in svc.run_due()}
    assert out["a"].status == "retrying"  # the first run on server-1 is active
    assert out["b"].status == "skipped" and "concurrency cap (1)" in out["b"].detail
    assert out["c"].status == "skipped"
    assert out["other"].status == "retrying"  # another system is independent
    with session_scope(rsvc.sessions) as s:
        s.add(RotationSystemCap(system_key="pg:server-1", max_concurrent=2))
    out = {o.secret: o for o in svc.run_due()}
    assert out["b"].status == "retrying" and "concurrency cap (2)" in out["c"].detail
    flaky.fail_times = 0
    clock.advance(hours=1)
    assert sorted(o.secret for o in svc.drain()) == ["a", "b", "other"]
    assert [(o.secret, o.status) for o in svc.run_due()] == [("c", "finished")]


def test_secrets_without_a_rotator_get_reminders_when_due(rsvc, clock, notifier):
    from tests.rotation.conftest import add_secret as add

    add(rsvc, "by-hand", rotator=None)
    svc = rotation_service(rsvc, worker_id="w1", reminder_every=dt.timedelta(hours=24))
    svc.tick()
    assert notifier.names() == ["rotation.reminder"]
    assert "by-hand" in notifier.events[0][1]["detail"] and notifier.events[0][1]["secret_ref"] == "by-hand"
    svc.tick()
    assert notifier.names() == ["rotation.reminder"]  # once per reminder period
    clock.advance(hours=24)
    svc.tick()
    assert notifier.names() == ["rotation.reminder", "rotation.reminder"]


def test_third_party_rotators_come_from_entry_points(monkeypatch):
    from importlib.metadata import EntryPoint

    from govern.rotation.rotators import registry

    ep = EntryPoint(name="acme", value="govern.rotation.rotators.base:StaticSecretRotator", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.GROUP else [])
    assert "acme" in registry.rotator_names()
    assert registry.load_rotator("acme").name == "static"
    with pytest.raises(Exception) as info:
        registry.load_rotator("nope")
    assert getattr(info.value, "code", "") == "not_found"
