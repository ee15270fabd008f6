"""Policies: the organisation-wide guardrails kept as files in the policies folder. Read-only here: policies
change through review in git, never through the console."""
from __future__ import annotations

import hashlib
from pathlib import Path

from flask_admin import BaseView, expose

from govern.admin.roles import ConsoleAccess

POLICY_SUFFIXES = (".cedar", ".cedarschema", ".json", ".yaml", ".yml")


def policies_dir(services) -> Path:
    configured = services.extras.get("policies_dir")
    if configured:
        return Path(configured)
    # The instance's own folder first, then the repository's `policies/` (reviewed in git).
    for candidate in (services.settings.home / "policies", Path.cwd() / "policies"):
        if candidate.is_dir():
            return candidate
    return services.settings.home / "policies"


def _validator(services):
    """The policy validator, when the policy package provides one (services.extras["policy_validator"]:
    a callable taking a Path and returning a list of problems)."""
    return services.extras.get("policy_validator")


class PoliciesView(ConsoleAccess, BaseView):
    def __init__(self, services, **kw):
        super().__init__(**kw)
        self.services = services

    @expose("/")
    def index(self):
        folder = policies_dir(self.services)
        validate = _validator(self.services)
        files = []
        if folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in POLICY_SUFFIXES):
                data = path.read_bytes()
                entry = {"name": str(path.relative_to(folder)), "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()[:16], "state": "unavailable", "problems": []}
                if validate is not None:
                    try:
                        problems = list(validate(path))
                    except Exception as exc:  # noqa: BLE001 - a broken policy must not break the page
                        problems = [f"validator failed: {type(exc).__name__}"]
                    entry["state"] = "invalid" if problems else "valid"
                    entry["problems"] = [str(p) for p in problems]
                files.append(entry)
        return self.render("govern_admin/policies.html", folder=str(folder), exists=folder.is_dir(), files=files,
                           validator=validate is not None)
