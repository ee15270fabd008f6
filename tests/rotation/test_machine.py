"""The pure state machine: no database, no clock."""
from __future__ import annotations

import datetime as dt

import pytest

from govern.rotation import machine as m

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_happy_path_visits_the_four_steps():
    state, seen = m.CREATED, []
    while (step := m.next_step(state)) is not None:
        seen.append(step)
        state = m.succeeded(state, 0, step, T, T).state
    assert seen == list(m.STEPS) and state == m.FINISHED


def test_manual_set_waits_then_confirm_goes_to_test():
    t = m.succeeded(m.PENDING, 0, "set", T, T, awaiting=True)
    assert t.state == m.AWAITING and m.next_step(m.AWAITING) is None
    c = m.confirmed(m.AWAITING, T, "ops")
    assert c.state == m.SET and c.record["by"] == "ops"
    with pytest.raises(ValueError):
        m.confirmed(m.SET, T, "ops")


def test_failures_back_off_exponentially_then_park():
    policy = m.RetryPolicy(max_attempts=3, base_seconds=10, max_seconds=15)
    t1 = m.failed(m.PENDING, 0, "set", T, T, "boom", policy)
    assert (t1.state, t1.attempts, t1.next_attempt_at) == (m.PENDING, 1, T + dt.timedelta(seconds=10))
    t2 = m.failed(m.PENDING, 1, "set", T, T, "boom", policy)
    assert t2.next_attempt_at == T + dt.timedelta(seconds=15)  # capped
    t3 = m.failed(m.PENDING, 2, "set", T, T, "boom", policy)
    assert t3.state == m.PARKED and t3.parked and t3.next_attempt_at is None


def test_failed_test_rolls_back_and_restarts_at_set():
    t = m.failed(m.SET, 0, "test", T, T, "refused", m.RetryPolicy())
    assert t.state == m.PENDING and t.rollback
    assert m.resume_state("test") == m.PENDING and m.resume_state("finish") == m.TESTED


def test_recovered_only_after_failures():
    assert not m.succeeded(m.TESTED, 0, "finish", T, T).recovered
    assert m.succeeded(m.TESTED, 2, "finish", T, T).recovered


def test_a_step_must_match_its_state():
    with pytest.raises(ValueError):
        m.succeeded(m.CREATED, 0, "finish", T, T)
