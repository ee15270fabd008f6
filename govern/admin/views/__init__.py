"""The console's views, in menu order."""
from __future__ import annotations


def build_views(db, services) -> list:
    return []
