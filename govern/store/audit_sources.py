"""Imported Salesforce orgs, kept as audit sources under their names (`govern import salesforce DIR --name ORG`,
`govern import list`, `govern import remove NAME`). govern's own landscape is the source named `govern`."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from govern.audit import model_codec
from govern.audit.model import AuditModel, AuditPolicy
from govern.audit.salesforce.importer import ImportResult
from govern.errors import NotFound, ValidationFailed
from govern.store.db import rows_matched
from govern.store.tables import Finding, SalesforceImport

GOVERN_SOURCE = "govern"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise ValidationFailed([{"location": "--name", "message": "must be 1-200 letters, digits, '.', '_' or '-', "
                                 f"starting with a letter or digit, not {name!r}"}])
    if name == GOVERN_SOURCE:
        raise ValidationFailed([{"location": "--name", "message": f"{GOVERN_SOURCE!r} is govern's own landscape"}])
    return name


def relative_root(directory: str) -> str | None:
    """`directory` relative to the working directory, when inside it (a repository checkout), else None."""
    path, cwd = Path(directory).resolve(), Path.cwd().resolve()
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return None


def save_import(session: Session, name: str, directory: str, result: ImportResult, now: dt.datetime) -> SalesforceImport:
    """Keep the org's model under `name`, replacing the previous import of that name."""
    check_name(name)
    row = session.execute(sa.select(SalesforceImport).where(col(SalesforceImport.name) == name)).scalar_one_or_none()
    if row is None:
        row = SalesforceImport(name=name)
        session.add(row)
    row.directory, row.root, row.imported_at = str(Path(directory).resolve())[:2000], relative_root(directory), now
    row.files_imported = result.imported
    row.files_skipped = sum(1 for o in result.outcomes if o.status == "skipped")
    row.files_failed = result.errors
    row.files = [dataclasses.asdict(o) for o in result.outcomes]
    row.model = model_codec.to_json(result.model)
    session.flush()
    return row


def describe(row: SalesforceImport) -> dict[str, Any]:
    return {"name": row.name, "kind": "salesforce", "directory": row.directory, "root": row.root,
            "imported_at": row.imported_at.isoformat() if row.imported_at else None,
            "files_imported": row.files_imported, "files_skipped": row.files_skipped,
            "files_failed": row.files_failed}


def list_imports(session: Session) -> list[SalesforceImport]:
    return list(session.execute(sa.select(SalesforceImport).order_by(SalesforceImport.name)).scalars())


def get_import(session: Session, name: str) -> SalesforceImport:
    row = session.execute(sa.select(SalesforceImport).where(col(SalesforceImport.name) == name)).scalar_one_or_none()
    if row is None:
        known = ", ".join([GOVERN_SOURCE] + [r.name for r in list_imports(session)])
        raise NotFound(f"no source named {name!r}; the sources are: {known}")
    return row


def remove_import(session: Session, name: str) -> int:
    """Forget an imported org and its findings; returns how many findings went. Stored runs keep their reports."""
    row = get_import(session, name)
    gone = rows_matched(session.execute(sa.delete(Finding).where(col(Finding.source) == name)))
    session.delete(row)
    session.flush()
    return gone


def load_import(row: SalesforceImport, now: dt.datetime, policy: AuditPolicy) -> AuditModel:
    model = model_codec.from_json(row.model, now, policy)
    model.name = row.name
    return model
