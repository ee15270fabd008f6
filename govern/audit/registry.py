"""The rule catalogue's vocabulary: severities, a rule's hit, and the `rule` decorator that registers a rule.

The rule modules (govern.audit.rules) import this, and govern.audit.engine imports them, so the
catalogue is complete whenever the engine is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable

from govern.audit.model import AuditModel, Location

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # info=0 .. critical=4


def at_or_above(severity: str, threshold: str) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]


@dataclass(frozen=True)
class Hit:
    subject_kind: str
    subject: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None
    severity: str | None = None  # this hit's own severity, when a rule grades its hits (else the rule's)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    rationale: str
    remediation: str
    check: Callable[[AuditModel], Iterable[Hit]]
    needs_usage: bool = False  # runs only when the model carries the decision log's aggregates


CATALOGUE: dict[str, Rule] = {}


def rule(id: str, title: str, severity: str, *, rationale: str, remediation: str, needs_usage: bool = False):
    """Register a rule function in the catalogue."""
    if severity not in SEVERITIES:
        raise ValueError(f"{id}: unknown severity {severity}")

    def decorator(fn: Callable[[AuditModel], Iterable[Hit]]):
        if id in CATALOGUE:
            raise ValueError(f"duplicate rule id {id}")
        CATALOGUE[id] = Rule(id, title, severity, rationale, remediation, fn, needs_usage)
        return fn

    return decorator
