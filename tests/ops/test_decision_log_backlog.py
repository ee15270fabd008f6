"""The decision log's backlog (queue depth and the age of the oldest unwritten record), read by /metrics."""
from __future__ import annotations

from govern.broker.decision_log import ChainedDecisionLog
from tests.broker.conftest import FakeClock


def test_backlog_counts_unwritten_records_and_their_age(services):
    clock = FakeClock()
    log = ChainedDecisionLog(services.engine, clock, linger_seconds=60)  # the writer lingers: nothing is written
    try:
        assert log.backlog() == (0, 0.0)
        for _ in range(3):
            log.append(action="token", named_credential="erp-api", allowed=False, rules=["default-deny"])
        clock.advance(10)
        assert log.backlog() == (3, 10.0)
        assert log.flush()
        assert log.backlog() == (0, 0.0)
    finally:
        log.close()
