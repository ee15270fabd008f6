"""Shared CLI plumbing: settings and services built once per invocation through the composition root."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from govern.bootstrap import Services

# The imports below sit inside the functions on purpose: `govern --help` and completion must not pay for
# SQLAlchemy, the adapters and the broker (bench/cli.py measures it; tests/test_cli_startup.py guards it).


def services(require_schema: bool = True, *, create: bool = False, store_only: bool = False) -> Services:
    """The Services for this invocation. Only `govern init` passes `create`: any other command run where no
    instance is (a missing SQLite file) stops with one line naming the instance it looked for, and creates
    nothing. Unless `require_schema` is False (init, db), refuse to run against a database whose schema is
    missing or behind the migrations, again naming the instance. `store_only`: a command that only reads the
    database gets the engine, sessions, cache and clock, and nothing else is imported or wired."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    found = root.meta.get("govern.services")
    if found is None or (root.meta.get("govern.store_only") and not store_only):
        from govern.config import load_settings
        from govern.logs import configure_logging

        settings = load_settings()
        if not create:
            missing = missing_instance(settings)
            if missing:
                fail(missing)
        configure_logging(settings.log_level if settings.log_level.upper() != "INFO" else "WARNING")
        found = build_store_services(settings) if store_only else build_services(settings)
        root.meta["govern.services"], root.meta["govern.store_only"] = found, store_only
        root.call_on_close(found.close)
    if require_schema and not root.meta.get("govern.schema_checked"):
        import sqlalchemy.exc

        from govern.store.db import describe_database, head_revisions, script_heads, stamped_revisions

        try:
            current = stamped_revisions(found.engine)
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0][:200]
            fail(f"cannot reach the database of the instance in {found.settings.home.resolve()} "
                 f"({describe_database(found.settings.database_url)}): {reason}; check GOVERN_DATABASE_URL "
                 "and that the database server is running (`govern doctor` checks every part)")
        if current != (script_heads() or head_revisions(found.engine)):
            fail(f"the database schema of the instance in {found.settings.home.resolve()} "
                 f"({describe_database(found.settings.database_url)}) is missing or out of date; "
                 "run `govern init` (new instance) or `govern db upgrade`")
        root.meta["govern.schema_checked"] = True
    return found


def build_services(settings) -> Services:
    """The composition root's `build_services`, imported when a command first needs it (tests replace
    this name to hand the CLI their own Services)."""
    from govern.bootstrap import build_services as build

    return build(settings)


def build_store_services(settings) -> Services:
    from govern.bootstrap import build_store_services as build

    return build(settings)


def missing_instance(settings) -> str | None:
    """One line saying where no instance was found, or None. Only a SQLite file can be checked without
    connecting (and connecting would create it); other databases are checked through their schema."""
    from govern.store.db import sqlite_path

    path = sqlite_path(settings.database_url)
    if path is None or path.exists():
        return None
    return (f"no govern instance in {settings.home.resolve()}: its database {path} does not exist; run "
            "`govern init` to create one there, or run from your instance's folder (or set GOVERN_HOME)")


def cli_actor() -> str:
    """Who ran the command, for the admin action log: `cli:<OS user>`."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli:unknown"


def fail(message: str) -> None:
    """One clear line, exit code 2."""
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


def json_option(command):
    """`--json`: the command's report as one JSON document on stdout (stable keys; an empty list is `[]`),
    nothing else on stdout and no progress bar."""
    return click.option("--json", "as_json", is_flag=True,
                        help="print one JSON document on stdout instead of text (an empty result is [])")(command)


def echo_json(document) -> None:
    """Dates and times as ISO 8601 (`2026-12-06T12:28:33+00:00`), whatever the service handed over."""
    import json

    def plain(value):
        isoformat = getattr(value, "isoformat", None)
        return isoformat() if callable(isoformat) else str(value)

    click.echo(json.dumps(document, indent=2, default=plain))


def output_option(help: str, **kw):
    """`-o/--output FILE`, the one spelling of the output flag; the older `--out` keeps working, hidden from
    --help. The command receives `output`."""
    import functools

    def decorate(command):
        @functools.wraps(command)
        def merged(*args, **kwargs):
            legacy = kwargs.pop("legacy_out", None)
            if legacy is not None:
                if kwargs.get("output") not in (None, legacy):
                    raise click.UsageError("give -o/--output once (--out is its old spelling)")
                kwargs["output"] = legacy
            return command(*args, **kwargs)

        merged = click.option("--out", "legacy_out", hidden=True, **kw)(merged)
        return click.option("-o", "--output", "output", help=help, **kw)(merged)

    return decorate
