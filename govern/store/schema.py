"""Every table module, imported in one place so that metadata is complete for Alembic and tests."""
from __future__ import annotations

from sqlmodel import SQLModel

import govern.store.broker_tables  # noqa: F401
import govern.store.proxy_tables  # noqa: F401
import govern.store.revocation_queue  # noqa: F401
import govern.store.rotation_tables  # noqa: F401
import govern.store.tables
import govern.store.upstream_tables  # noqa: F401


def metadata():
    return SQLModel.metadata
