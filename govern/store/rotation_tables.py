"""Rotation-only tables: the per-system concurrency cap (seed practice 2: never overload a system)."""
from __future__ import annotations

from sqlmodel import Field, SQLModel


class RotationSystemCap(SQLModel, table=True):
    """How many rotations may be active at once on one system (absent: 1, so two never overlap)."""

    __tablename__ = "rotation_system_cap"
    system_key: str = Field(max_length=300, primary_key=True)
    max_concurrent: int = 1
