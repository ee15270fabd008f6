"""Operations (issue #9): what /metrics, the logs and the worker's alerts report about govern.

`instrument(services)` is called once by govern.bootstrap after the adapters are wired.
"""
from __future__ import annotations

from govern.ops.observe import InstrumentedTokenHttp
from govern.ops.state import add_state_readers


def instrument(services) -> None:
    add_state_readers(services)
    tokens = services.upstream_tokens
    if tokens is not None and getattr(tokens, "http", None) is not None:
        tokens.http = InstrumentedTokenHttp(tokens.http, services)
