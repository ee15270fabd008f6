"""Policies: the organisation-wide guardrails kept as files in the policies folder. Read-only here: policies
change through review in git, never through the console.

Validation uses the policy package's validator when this build has one (`govern.policy.guardrails.
validate_directory`, or a callable in services.policy_validator taking the folder and returning
(reports with .file and .errors, folder-level problems)); otherwise each file is marked "unavailable".
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from flask_admin import BaseView, expose

from govern.admin.roles import ConsoleAccess
from govern.policy.guardrails import policies_directory, validate_directory

POLICY_SUFFIXES = (".cedar", ".cedarschema", ".json", ".yaml", ".yml")


def policies_dir(services) -> Path:
    configured = services.policies_dir
    return Path(configured) if configured else policies_directory(services.settings)


def _validator(services):
    if services.policy_validator is not None:
        return services.policy_validator
    return validate_directory


def validation(services, folder: Path) -> tuple[bool, dict[str, list[str]], list[str]]:
    """(validator available, file name -> problems, folder-level problems)."""
    validate = _validator(services)
    if validate is None:
        return False, {}, []
    try:
        reports, problems = validate(folder)
    except Exception as exc:  # noqa: BLE001 - a broken policy must not break the page
        return True, {}, [f"the validator failed: {type(exc).__name__}"]
    by_file: dict[str, list[str]] = {}
    for report in reports:
        by_file.setdefault(report.file, []).extend(f"{report.policy_id}: {e}" for e in report.errors)
    return True, by_file, [str(p) for p in problems]


class PoliciesView(ConsoleAccess, BaseView):
    def __init__(self, services, **kw):
        super().__init__(**kw)
        self.services = services

    @expose("/")
    def index(self):
        folder = policies_dir(self.services)
        available, by_file, folder_problems = validation(self.services, folder) if folder.is_dir() else (False, {}, [])
        files = []
        if folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in POLICY_SUFFIXES):
                data = path.read_bytes()
                name = str(path.relative_to(folder))
                problems = by_file.get(path.name, [])
                if not available:
                    state = "unavailable"
                elif problems:
                    state = "invalid"
                elif folder_problems and path.name not in by_file:
                    state = "unchecked"  # the folder itself is broken (e.g. no schema): nothing was checked
                else:
                    state = "valid"
                files.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16],
                              "state": state, "problems": problems})
        return self.render("govern_admin/policies.html", folder=str(folder), exists=folder.is_dir(), files=files,
                           validator=available, folder_problems=folder_problems)
