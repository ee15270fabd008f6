"""The Rotator plugin interface and its discovery through the `govern.rotators` entry points."""
from __future__ import annotations

from govern.rotation.rotators.base import (  # noqa: F401
    NotConfigured,
    NotSupported,
    RotationContext,
    RotationTestFailed,
    Rotator,
    SecretRefView,
)
from govern.rotation.rotators.registry import load_rotator, rotator_names  # noqa: F401
