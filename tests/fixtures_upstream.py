"""The `fake_upstream` fixture: a running fault-injecting authlib authorization server (tests/fakes/oauth_server.py).

Loaded as a pytest plugin from tests/conftest.py, so every test package (broker, proxy, rotation) can use it.
"""
from __future__ import annotations

import pytest

from tests.fakes.oauth_server import FakeUpstream


@pytest.fixture
def fake_upstream():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()
