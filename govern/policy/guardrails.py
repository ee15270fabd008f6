"""Guardrails kept as code: the Cedar policies in `policies/` (GOVERN_POLICIES_DIR), checked against
govern's Cedar schema (`policies/govern.cedarschema`).

Every policy carries an `@id("...")` annotation; a denial names it as `forbid:<id>`. The files are
parsed once into a `cedarpy.PolicySet` handle that the decider reuses for every request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cedarpy

from govern.errors import ConfigurationError

SCHEMA_FILE = "govern.cedarschema"


@dataclass
class PolicyReport:
    file: str
    policy_id: str
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Guardrails:
    directory: Path
    policy_set: cedarpy.PolicySet
    schema: cedarpy.Schema
    schema_text: str
    ids: tuple[str, ...]


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.cedar") if p.is_file())


def _ids_in(text: str) -> list[tuple[str, str | None]]:
    """(cedar's generated id, @id annotation) of each policy in one file's text."""
    doc = json.loads(cedarpy.policies_to_json_str(text))
    out = []
    for generated, body in (doc.get("staticPolicies") or {}).items():
        out.append((generated, (body.get("annotations") or {}).get("id")))
    return out


def validate_directory(directory: Path) -> tuple[list[PolicyReport], list[str]]:
    """Check every policy file against the schema. Returns one report per policy and directory-level errors."""
    problems: list[str] = []
    reports: list[PolicyReport] = []
    if not directory.is_dir():
        return [], [f"{directory}: no such policies directory"]
    schema_path = directory / SCHEMA_FILE
    if not schema_path.is_file():
        return [], [f"{schema_path}: the Cedar schema is missing"]
    schema_text = schema_path.read_text()
    try:
        schema = cedarpy.Schema.from_str(schema_text)
    except ValueError as exc:
        return [], [f"{schema_path}: the schema does not parse: {_first_line(exc)}"]
    seen: dict[str, str] = {}
    files = _files(directory)
    if not files:
        problems.append(f"{directory}: no *.cedar policy files")
    for path in files:
        text = path.read_text()
        try:
            ids = _ids_in(text)
        except ValueError as exc:
            reports.append(PolicyReport(path.name, "?", [f"does not parse: {_first_line(exc)}"]))
            continue
        result = cedarpy.validate_policies(text, schema)
        errors_by_generated: dict[str, list[str]] = {}
        for err in result.errors:
            errors_by_generated.setdefault(err.policy_id, []).append(err.error)
        for generated, annotated in ids:
            report = PolicyReport(path.name, annotated or f"(no @id: {generated})",
                                  list(errors_by_generated.get(generated, [])))
            if not annotated:
                report.errors.append('every policy needs an @id("...") annotation')
            elif annotated in seen:
                report.errors.append(f"duplicate @id, also in {seen[annotated]}")
            else:
                seen[annotated] = path.name
            reports.append(report)
    return reports, problems


PACKAGED_POLICIES = Path(__file__).resolve().parent / "policies"


def policies_directory(settings) -> Path:
    """Where the guardrails are: GOVERN_POLICIES_DIR (relative to the instance folder), else the instance
    folder's own `policies/` if it has one, else the copy shipped inside the package. Never the working
    directory: a server started from another folder must decide on the same policies, or not start."""
    if settings.policies_dir is not None:
        configured = Path(settings.policies_dir)
        return configured if configured.is_absolute() else Path(settings.home) / configured
    own = Path(settings.home) / "policies"
    return own if own.is_dir() else PACKAGED_POLICIES


def load_guardrails(directory: Path) -> Guardrails:
    """Parse and validate the policies once; refuse to decide on policies that do not validate."""
    directory = Path(directory)
    reports, problems = validate_directory(directory)
    bad = problems + [f"{r.file} {r.policy_id}: {'; '.join(r.errors)}" for r in reports if not r.ok]
    if bad:
        raise ConfigurationError("the guardrail policies are not valid (run `govern policies validate`): "
                                 + " | ".join(bad[:5]))
    text = "\n".join(p.read_text() for p in _files(directory))
    schema_text = (directory / SCHEMA_FILE).read_text()
    return Guardrails(directory=directory, policy_set=cedarpy.PolicySet.from_str(text),
                      schema=cedarpy.Schema.from_str(schema_text), schema_text=schema_text,
                      ids=tuple(r.policy_id for r in reports))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
