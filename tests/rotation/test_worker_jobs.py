"""`govern worker --once` runs every scheduled job: rotations, queued proxy calls after a maintenance
window, and signing-key retirement; a failing job fails alone, is logged and makes the exit code 1."""
from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import sqlalchemy as sa

from govern.store.broker_tables import SigningKey
from govern.store.proxy_tables import QueuedCall
from tests.proxy.conftest import CALLER, env, upstream  # noqa: F401 - fixtures
from tests.proxy.test_maintenance import AFTER, _queue_mode
from tests.rotation.conftest import add_secret


@pytest.fixture
def worker_cli(env, runner, monkeypatch):  # noqa: F811
    """The CLI uses the proxy test environment's Services (fake upstream, clock, memory store)."""
    import govern.cli.context as context

    monkeypatch.setattr(context, "build_services", lambda settings, **kw: env.services)
    monkeypatch.setattr(env.services, "close", lambda: None)  # the env fixture closes it
    return runner


def _states(services):
    with services.sessions() as s:
        keys = dict(s.execute(sa.select(SigningKey.kid, SigningKey.state)).all())
        calls = [c.status for c in s.execute(sa.select(QueuedCall).order_by(QueuedCall.id)).scalars()]
    return keys, calls


def test_worker_once_runs_each_job(worker_cli, env):  # noqa: F811
    _queue_mode(env)
    r = env.client.post(env.url("orders"), data=json.dumps({"n": 1}),
                        headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 202
    keys = env.services.signing_keys
    first = keys.rotate()
    keys.rotate()  # `first` now retires once the tokens it signed have expired
    add_secret(env.services, "a")
    env.clock.set(AFTER + dt.timedelta(hours=2))  # after the window and past the retiring key's tokens

    result = worker_cli.invoke(["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "finished               a" in result.output
    assert "delivered              queued call" in result.output
    signing, calls = _states(env.services)
    assert calls == ["delivered"] and env.upstream.count == 1
    assert signing[first] == "retired"
    delivery = env.log.records[-1]  # the delivery is a decision of its own
    assert (delivery["action"], delivery["upstream_status"], delivery.get("error_code")) == ("proxy_delivery", 201, None)


def test_a_failing_job_fails_alone(worker_cli, env, monkeypatch, caplog):  # noqa: F811
    import govern.broker.proxy.queue as queue

    def broken(queued, now=None, **kw):
        raise RuntimeError("queue table unreachable")

    monkeypatch.setattr(queue, "deliver_queued", broken)
    add_secret(env.services, "b")
    caplog.set_level(logging.ERROR, logger="govern.worker")
    result = worker_cli.invoke(["worker", "--once"])
    assert result.exit_code == 1, result.output
    assert "failed                 job queued_calls  RuntimeError" in result.output
    assert "finished               b" in result.output  # the rotation job still ran
    assert any(getattr(rec, "job", None) == "queued_calls" for rec in caplog.records)
    assert "queue table unreachable" not in result.output  # only the type: the text may carry data


def test_worker_pass_posts_alerts_once_then_resolves(services):
    """The worker's alerts job posts a held condition once (not every pass) and a resolution when it clears."""
    from govern.rotation.wiring import rotation_service
    from govern.store.db import session_scope
    from govern.store.tables import SecretRef, utcnow
    from govern.worker import jobs, run_pass

    class Recorder:
        def __init__(self):
            self.events = []

        def notify(self, event, payload):
            self.events.append((event, payload))

    recorder = Recorder()
    services.notifier = recorder
    with session_scope(services.sessions) as s:
        s.add(SecretRef(external_id="credential/x/client_secret", owner_kind="credential", owner="x",
                        field="client_secret", path="credential/x/client_secret",
                        next_due_at=utcnow() - dt.timedelta(days=3)))
    job_list = [j for j in jobs(services, rotation_service(services)) if j.name == "alerts"]
    first = run_pass(services, job_list)
    assert [(o.secret, o.status) for o in first] == [("alert secrets_overdue", "sent")]
    assert run_pass(services, job_list) == []  # still holding: not sent again
    with session_scope(services.sessions) as s:
        s.execute(sa.update(SecretRef).values(next_due_at=utcnow() + dt.timedelta(days=30)))
    assert [(o.secret, o.status) for o in run_pass(services, job_list)] == [("alert secrets_overdue", "resolved")]
    assert [e for e, _ in recorder.events] == ["alert.secrets_overdue", "alert.resolved"]
