"""Glob path patterns for grants and named credentials (docs/governance-schema.md).

`*` matches exactly one path segment, `**` matches any number of segments (also none). The broker's
policy code and the audit's right-sizing replay share this one function, so that what the audit proves
is what the broker enforces.
"""
from __future__ import annotations

from functools import lru_cache
from fnmatch import fnmatchcase


def _segments(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("?", 1)[0].split("/") if p)


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> tuple[str, ...]:
    return _segments(pattern)


def path_matches(pattern: str, path: str) -> bool:
    """True when `path` matches the glob `pattern` (segment-wise; `**` spans segments)."""
    return _match(_pattern(pattern), _segments(path or "/"))


def _match(pat: tuple[str, ...], segs: tuple[str, ...]) -> bool:
    if not pat:
        return not segs
    head = pat[0]
    if head == "**":
        rest = pat[1:]
        return any(_match(rest, segs[i:]) for i in range(len(segs) + 1))
    if not segs:
        return False
    if head == "*" or fnmatchcase(segs[0], head):
        return _match(pat[1:], segs[1:])
    return False


def any_path_matches(patterns, path: str) -> bool:
    """No patterns means no restriction (the schema's default: all paths)."""
    patterns = list(patterns or ())
    return not patterns or any(path_matches(p, path) for p in patterns)


def method_allowed(methods, method: str | None) -> bool:
    methods = [m.upper() for m in (methods or ())]
    return not methods or "*" in methods or (method or "").upper() in methods
