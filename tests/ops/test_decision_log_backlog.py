"""The decision log's backlog (queue depth and the age of the oldest unwritten record), read by /metrics."""
from __future__ import annotations

import threading
import time

from govern.broker.decision_log import ChainedDecisionLog
from govern.store.decision_records import DecisionRecordRepo
from tests.broker.conftest import FakeClock


def test_backlog_counts_unwritten_records_and_their_age(services):
    clock = FakeClock()
    # The writer lingers: nothing is written until flush() wakes it, and the appenders wait for their commit.
    log = ChainedDecisionLog(DecisionRecordRepo(services.engine), clock, services.decision_keys, linger_seconds=60)
    appenders = [threading.Thread(target=log.append, kwargs=dict(action="token", named_credential="erp-api",
                                                                 allowed=False, rules=["default-deny"]))
                 for _ in range(3)]
    try:
        assert log.backlog() == (0, 0.0)
        [t.start() for t in appenders]
        deadline = time.monotonic() + 30
        while log.backlog()[0] < 3:
            assert time.monotonic() < deadline, log.backlog()
            time.sleep(0.01)
        clock.advance(10)
        assert log.backlog() == (3, 10.0)
        assert all(t.is_alive() for t in appenders)  # not answered before the commit
        assert log.flush()
        [t.join(30) for t in appenders]
        assert log.backlog() == (0, 0.0)
    finally:
        log.close()
