"""Bounds on untrusted input, checked before anything expensive or stateful sees it (issue #14).

Pure functions, no framework: the HTTP edge (govern/api/edge.py, govern/api/proxy.py) and the loaders call
them, so that a limit means the same thing everywhere.

- JSON nesting: Python's json module recurses per level and fails with RecursionError near 1,000 levels,
  which is neither a clean refusal nor cheap. `json_depth_exceeds` scans the bytes without parsing.
- Integers: `int()` accepts Unicode digits ("١٢"), signs, spaces and underscores, and any magnitude;
  a database column holds at most a signed 64-bit value. `ascii_int` accepts `[0-9]+` only, in range.
"""
from __future__ import annotations

import re

MAX_JSON_DEPTH = 64
SQL_BIGINT_MAX = 2 ** 63 - 1  # the largest value an id or offset column (BIGINT) can hold
_DIGITS = re.compile(r"[0-9]{1,19}")  # 19 digits cover SQL_BIGINT_MAX; more is always out of range
# A JSON string (possessive, so an unterminated one costs one linear scan) or one bracket.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


def json_depth_exceeds(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data`, read as JSON, opens more than `limit` arrays/objects inside one another.

    Brackets inside strings do not count. Invalid JSON is measured as written (the parser refuses it later).
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= limit:  # the common case: cannot be too deep
        return False
    depth = 0
    for match in _JSON_TOKENS.finditer(data):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif depth:
            depth -= 1
    return False


def ascii_int(raw: str | None, *, low: int = 0, high: int = SQL_BIGINT_MAX) -> int | None:
    """`raw` as an integer in [low, high] written with ASCII digits only (no sign, space or "_"); else None."""
    if raw is None or _DIGITS.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if low <= value <= high else None
