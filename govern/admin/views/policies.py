"""Policies: the organisation-wide guardrails kept as files in the policies folder. Read-only here: policies
change through review in git, never through the console.

Validation uses the policy package's validator when this build has one (`govern.policy.guardrails.
validate_directory`, or a callable in services.policy_validator taking the folder and returning
(reports with .file and .errors, folder-level problems)); otherwise each file is marked "unavailable".
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col
from flask_admin import BaseView, expose

from govern.admin.cedar import highlight, split_policies
from govern.admin.links import list_url
from govern.admin.roles import ConsoleAccess
from govern.store.audit_loader import NOT_CALLS
from govern.store.tables import Decision
from govern.policy.guardrails import policies_directory, validate_directory

WINDOW_DAYS = 30  # the decisions each policy decided are counted over this window
POLICY_SUFFIXES = (".cedar", ".cedarschema", ".json", ".yaml", ".yml")


def policies_dir(services) -> Path:
    configured = services.policies_dir
    return Path(configured) if configured else policies_directory(services.settings)


def _validator(services):
    if services.policy_validator is not None:
        return services.policy_validator
    return validate_directory


def validation(services, folder: Path) -> tuple[bool, dict[str, list[str]], list[str], dict[tuple[str, str], list[str]]]:
    """(validator available, file name -> problems, folder-level problems, (file, policy id) -> problems)."""
    validate = _validator(services)
    if validate is None:
        return False, {}, [], {}
    try:
        reports, problems = validate(folder)
    except Exception as exc:  # noqa: BLE001 - a broken policy must not break the page
        return True, {}, [f"the validator failed: {type(exc).__name__}"], {}
    by_file: dict[str, list[str]] = {}
    by_policy: dict[tuple[str, str], list[str]] = {}
    for report in reports:
        by_file.setdefault(report.file, []).extend(f"{report.policy_id}: {e}" for e in report.errors)
        by_policy.setdefault((report.file, report.policy_id), []).extend(report.errors)
    return True, by_file, [str(p) for p in problems], by_policy


def decided_counts(session, since: dt.datetime) -> tuple[dict[str, int], int]:
    """(forbid policy id -> decisions it denied, decisions the permission sets permitted) since `since`."""
    forbids: dict[str, int] = {}
    permitted = 0
    rows = session.execute(sa.select(col(Decision.allowed), col(Decision.rules)).where(
        col(Decision.at) >= since, col(Decision.action).not_in(NOT_CALLS)))
    for allowed, rules in rows:
        if allowed:
            permitted += 1
        for rule in rules or []:
            if rule.startswith("forbid:"):
                forbids[rule.removeprefix("forbid:")] = forbids.get(rule.removeprefix("forbid:"), 0) + 1
    return forbids, permitted


def _state(available: bool, problems: list[str], folder_broken: bool) -> str:
    if not available:
        return "unavailable"
    if problems:
        return "invalid"
    return "unchecked" if folder_broken else "valid"


class PoliciesView(ConsoleAccess, BaseView):
    def __init__(self, services, session=None, **kw):
        super().__init__(**kw)
        self.services = services
        self.session = session

    def _policies(self, folder: Path, available: bool, by_policy, by_file, folder_problems) -> list[dict]:
        """Each policy of each .cedar file: its id, effect, highlighted text, validation, and the decisions it
        decided in the window with a link to them."""
        since = self.services.clock.now() - dt.timedelta(days=WINDOW_DAYS)
        forbids, permitted = decided_counts(self.session, since) if self.session is not None else ({}, 0)
        window = ("Time", "greater than", since)
        out = []
        for path in sorted(p for p in folder.glob("*.cedar") if p.is_file()):
            unparsable = by_policy.get((path.name, "?"), [])
            for policy in split_policies(path.read_text(encoding="utf-8", errors="replace")):
                problems = unparsable or by_policy.get((path.name, policy.policy_id or ""), [])
                if policy.policy_id is None and not problems and available:
                    problems = ['every policy needs an @id("...") annotation']
                if policy.effect == "forbid" and policy.policy_id:
                    count = forbids.get(policy.policy_id, 0)
                    link = list_url("console_decisions", ("Rule", "equals", f"forbid:{policy.policy_id}"), window)
                    meaning = "denied"
                elif policy.effect == "permit":
                    count = permitted
                    link = list_url("console_decisions", ("Allowed by policy", "equals", "1"),
                                    ("Action", "not in list", ",".join(NOT_CALLS)), window)
                    meaning = "permitted"
                else:
                    count, link, meaning = 0, None, "decided"
                out.append({"id": policy.policy_id or "(no @id)", "file": path.name, "effect": policy.effect or "?",
                            "html": highlight(policy.text), "problems": problems,
                            "state": _state(available, problems, bool(folder_problems) and path.name not in by_file),
                            "count": count, "link": link, "meaning": meaning})
        return out

    @expose("/")
    def index(self):
        folder = policies_dir(self.services)
        available, by_file, folder_problems, by_policy = (
            validation(self.services, folder) if folder.is_dir() else (False, {}, [], {}))
        policies = self._policies(folder, available, by_policy, by_file, folder_problems) if folder.is_dir() else []
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
                           validator=available, folder_problems=folder_problems, policies=policies,
                           window_days=WINDOW_DAYS)
