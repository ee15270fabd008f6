"""The change plan: what `govern apply` will create, update, leave alone and (with prune) delete.

Pure: it compares two landscapes of specs (see specs.py). Ordering is deterministic: kinds in
dependency order (systems first), ids sorted, deletions in reverse dependency order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from govern.config_as_code.specs import KINDS, Landscape, Spec


@dataclass(frozen=True)
class Change:
    kind: str
    id: str
    action: str  # create | update | delete
    # field -> (before, after); empty for create and delete
    diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    spec: Spec | None = None  # the desired spec (create, update)

    def line(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        text = f"{sign} {self.action} {self.kind} {self.id}"
        return f"{text} ({', '.join(self.diff)})" if self.diff else text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "id": self.id, "action": self.action}
        if self.diff:
            out["changes"] = {name: {"before": before, "after": after} for name, (before, after) in self.diff.items()}
        return out


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    unchanged: dict[str, list[str]] = field(default_factory=dict)  # kind -> ids
    dry_run: bool = False
    prune: bool = False
    applied: bool = False
    # Things applied but worth a second look (e.g. a plain-http upstream URL in development).
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # Upstream revocations (RFC 7009) the change queues for the worker: retired or removed users' principals.
    revocations: list[str] = field(default_factory=list)

    def of(self, action: str, kind: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.action == action and (kind is None or c.kind == kind)]

    @property
    def counts(self) -> dict[str, int]:
        return {"create": len(self.of("create")), "update": len(self.of("update")),
                "unchanged": sum(len(v) for v in self.unchanged.values()), "delete": len(self.of("delete"))}

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        c = self.counts
        return (f"plan: {c['create']} to create, {c['update']} to update, {c['unchanged']} unchanged, "
                f"{c['delete']} to delete")

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes] + [self.summary()]

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "prune": self.prune, "applied": self.applied, "counts": self.counts,
                "warnings": list(self.warnings), "revocations": list(self.revocations),
                "changes": [c.to_dict() for c in self.changes],
                "unchanged": {kind: ids for kind, ids in self.unchanged.items() if ids},
                "summary": self.summary()}


def diff_specs(before: Spec, after: Spec) -> dict[str, tuple[Any, Any]]:
    return {name: (before.get(name), after[name]) for name in after if before.get(name) != after[name]}


def make_plan(desired: Landscape, current: Landscape, *, prune: bool = False) -> Plan:
    plan = Plan(prune=prune)
    for kind in KINDS:
        want, have = desired.get(kind, {}), current.get(kind, {})
        plan.unchanged[kind] = []
        for ext_id in sorted(want):
            if ext_id not in have:
                plan.changes.append(Change(kind, ext_id, "create", spec=want[ext_id]))
                continue
            diff = diff_specs(have[ext_id], want[ext_id])
            if diff:
                plan.changes.append(Change(kind, ext_id, "update", diff=diff, spec=want[ext_id]))
            else:
                plan.unchanged[kind].append(ext_id)
    if prune:
        for kind in reversed(KINDS):
            want, have = desired.get(kind, {}), current.get(kind, {})
            plan.changes.extend(Change(kind, ext_id, "delete") for ext_id in sorted(set(have) - set(want)))
    return plan
