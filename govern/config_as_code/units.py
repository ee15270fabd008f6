"""Durations and sizes as written in governance.yaml, and back.

Durations: ``"200ms"``, ``"30s"``, ``"15m"``, ``"24h"``, ``"90d"``, ``"2w"`` or a number of seconds.
Sizes: ``"512B"``, ``"64KB"``, ``"10MB"``, ``"1GB"`` (binary multiples, as the defaults are) or a number of bytes.
`format_*` writes the largest unit that divides the value exactly, so parse(format(x)) == x.
"""
from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KIB|MB|MIB|GB|GIB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"B": 1, "KB": 1024, "KIB": 1024, "MB": 1024 ** 2, "MIB": 1024 ** 2, "GB": 1024 ** 3, "GIB": 1024 ** 3}


def parse_duration(value) -> float:
    """Seconds. Raises ValueError with a message fit for a user."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 24h or 90d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError("expected a duration such as 30s, 15m, 24h or 90d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return round(seconds, 3)


def format_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    for unit, factor in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if ms and ms % (factor * 1000) == 0:
            return f"{ms // (factor * 1000)}{unit}"
    return f"{ms}ms" if ms else "0s"


def parse_size(value) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512KB or 10MB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    else:
        raise ValueError("expected a size such as 512KB or 10MB")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


def format_size(size: int) -> str:
    for unit in ("GB", "MB", "KB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"
