"""The rule engine: a catalogue of small rules, each a function over the AuditModel.

Every rule carries an id (GOV-AREA-NNN), a title, a severity, a rationale citing the seed practice it
enforces (section number and words), remediation text, and yields hits with evidence. The engine turns
hits into Findings with a stable fingerprint (source + rule + subject), which keys trend and suppression.
The rules register themselves in govern.audit.registry, which they import instead of this module.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Iterator

from govern.audit import rules  # noqa: F401 - importing the package registers every rule
from govern.audit.model import AuditModel, Location
from govern.audit.registry import CATALOGUE, SEVERITIES, SEVERITY_RANK, Hit, Rule, at_or_above, rule

__all__ = ["CATALOGUE", "SEVERITIES", "SEVERITY_RANK", "Finding", "Hit", "Rule", "at_or_above", "catalogue",
           "fingerprint", "iter_hits", "rule", "run_rules"]


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


def catalogue() -> dict[str, Rule]:
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
