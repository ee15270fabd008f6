"""The rule engine: a catalogue of small rules, each a function over the AuditModel.

Every rule carries an id (GOV-AREA-NNN), a title, a severity, a rationale citing the seed practice it
enforces (section number and words), remediation text, and yields hits with evidence. The engine turns
hits into Findings with a stable fingerprint (source + rule + subject), which keys trend and suppression.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable, Iterator

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


@dataclass
class Finding:
    rule_id: str
    severity: str
    title: str
    subject_kind: str
    subject: str
    message: str
    evidence: dict[str, Any]
    remediation: str
    rationale: str
    location: Location | None
    fingerprint: str
    status: str = "open"  # open | suppressed
    suppression: dict[str, Any] | None = None
    source: str = ""  # the audited source's name (AuditModel.name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint, "rule_id": self.rule_id, "severity": self.severity,
            "title": self.title, "subject_kind": self.subject_kind, "subject": self.subject,
            "message": self.message, "evidence": self.evidence, "remediation": self.remediation,
            "rationale": self.rationale, "status": self.status, "suppression": self.suppression,
            "location": {"file": self.location.file, "line": self.location.line} if self.location else None,
            "source": self.source,
        }


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


def catalogue() -> dict[str, Rule]:
    from govern.audit import rules  # noqa: F401  (importing registers every rule)

    return CATALOGUE


def fingerprint(source: str, rule_id: str, subject_kind: str, subject: str) -> str:
    raw = "\x1f".join((source, rule_id, subject_kind, subject)).encode()
    return hashlib.sha256(raw).hexdigest()[:40]


def run_rules(model: AuditModel, only: Iterable[str] | None = None, progress=None) -> list[Finding]:
    """Run the catalogue (or `only` these ids) and return findings, most severe first. `progress(rule_id)`,
    when given, is called once per rule of the catalogue, run or skipped."""
    selected = catalogue()
    model.cache.clear()  # the model may have changed since the last run
    wanted = set(only) if only else None
    out: dict[str, Finding] = {}
    source = model.name or model.source
    for r in selected.values():
        if progress is not None:
            progress(r.id)
        if wanted is not None and r.id not in wanted:
            continue
        if r.needs_usage and not model.usage_loaded:
            continue
        for hit in r.check(model):
            fp = fingerprint(source, r.id, hit.subject_kind, hit.subject)
            if fp in out:  # one finding per rule and subject; keep the first evidence
                continue
            # a hit without a place of its own points where its subject was declared
            location = hit.location or model.locate(hit.subject_kind, hit.subject)
            out[fp] = Finding(r.id, hit.severity or r.severity, r.title, hit.subject_kind, hit.subject, hit.message, hit.evidence,
                              r.remediation, r.rationale, location, fp, source=source)
    return sorted(out.values(), key=lambda f: (-SEVERITY_RANK[f.severity], f.rule_id, f.subject))


def iter_hits(rule_id: str, model: AuditModel) -> Iterator[Hit]:
    yield from catalogue()[rule_id].check(model)
