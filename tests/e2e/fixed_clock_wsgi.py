"""gunicorn entry point for tests that need govern's clock at a chosen time in every worker:
`gunicorn 'tests.e2e.fixed_clock_wsgi:app()'` with GOVERN_TEST_NOW set to an ISO 8601 instant.

The app is built as `govern.wsgi:app()` builds it; only the injected clock differs (govern.ports.Clock): `now()`
stays at GOVERN_TEST_NOW, `monotonic()` runs (snapshot bounds and cache lifetimes still move)."""
from __future__ import annotations

import datetime as dt
import os
import time


class FixedClock:
    def __init__(self, now: dt.datetime):
        self._now = now

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()


def app():
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings

    now = dt.datetime.fromisoformat(os.environ["GOVERN_TEST_NOW"])
    return create_app(services=build_services(load_settings(), clock=FixedClock(now)))
