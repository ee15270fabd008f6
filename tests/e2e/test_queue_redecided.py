"""Issue #5: a call queued during a maintenance window is decided again, by the real decider, when the worker
delivers it. Suspending the integration user while the call waits stops it; restoring the user and retrying
the dead letter delivers it, with the credential injected then."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from govern.broker.proxy.queue import deliver_queued, dlq_list, dlq_retry
from govern.store.db import session_scope
from govern.store.tables import IntegrationUser, NamedCredential, System
from tests.e2e.conftest import API_KEY

pytestmark = [pytest.mark.db, pytest.mark.slow]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _window_around(now: dt.datetime) -> list[dict]:
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
    return [{"day": DAYS[start.weekday()], "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}]


def _set(live, *, window: list[dict] | None = None, user_status: str | None = None) -> None:
    with session_scope(live.services.sessions) as s:
        if window is not None:
            s.execute(sa.update(System).where(System.external_id == "stock").values(maintenance_windows=window))
            s.execute(sa.update(NamedCredential).where(NamedCredential.external_id == "stock-api")
                      .values(during_maintenance="queue"))
        if user_status is not None:
            s.execute(sa.update(IntegrationUser).where(IntegrationUser.external_id == "order-sync")
                      .values(status=user_status, updated_at=dt.datetime.now(dt.UTC)))


def test_a_queued_call_is_decided_again_at_delivery(live):
    token = live.govern_token(scope="items.read")
    now = dt.datetime.now(dt.UTC)
    _set(live, window=_window_around(now))
    queued = live.proxy(token, "stock-api", "v1/items/7", headers={"X-Correlation-ID": "queued-then-suspended"})
    assert queued.status_code == 202, queued.text
    assert live.resources.count == 0

    _set(live, window=[], user_status="suspended")
    outcomes = deliver_queued(live.services.proxy.queued, now + dt.timedelta(hours=2))  # due after the window's end
    assert len(outcomes) == 1 and not outcomes[0].ok
    assert "refused at delivery (deny:user_suspended)" in outcomes[0].detail
    assert live.resources.count == 0  # nothing reached the system
    (dead,) = dlq_list(live.services.proxy.queued)
    assert dead.reason == "deny:user_suspended" and dead.source_ip == "127.0.0.1"
    listed = live.runner.invoke(["dlq", "list", "--json"])  # the operator's view, read from the store
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    assert (item["id"], item["reason"], item["attempts"]) == (dead.id, "deny:user_suspended", 1)
    assert "body" not in item and "headers" not in item and item["created_at"]
    delivery = [d for d in live.decisions() if d.correlation_id == "queued-then-suspended"]
    assert [d.allowed for d in delivery] == [True, False]  # allowed when queued, refused at delivery
    assert delivery[-1].rules == ["deny:user_suspended"]

    _set(live, user_status="active")
    retried = dlq_retry(live.services.proxy.queued, dead.id)
    assert retried.ok, retried.detail
    got = live.resources.last()
    assert got.path == "/v1/items/7" and got.headers["X-Api-Key"] == API_KEY
    assert dlq_list(live.services.proxy.queued) == []
