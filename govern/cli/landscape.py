"""`govern apply` and `govern export`: configuration as code on the command line."""
from __future__ import annotations

import sys
import time
from typing import NoReturn

import click

from govern.cli.context import cli_actor, services
from govern.errors import DocumentTooComplex, DocumentTooLarge, ValidationFailed


@click.command("apply")
@click.option("-f", "--file", "path", required=True, help="governance.yaml to apply; - reads stdin")
@click.option("--dry-run", is_flag=True, help="print the plan, write nothing")
@click.option("--prune", is_flag=True, help="also delete entities that the file does not declare")
@click.option("--reactivate", "reactivate", multiple=True, metavar="USER",
              help="bring back this retired (offboarded) integration user; repeatable")
def apply_command(path: str, dry_run: bool, prune: bool, reactivate: tuple[str, ...]) -> None:
    """Validate the whole file, print the change plan, and apply it in one transaction.

    An applied change is recorded in the admin action log as `cli:<OS user>`."""
    from govern.config_as_code.yaml_loader import MAX_DOCUMENT_BYTES
    from govern.cli.progress import progress_bar
    from govern.landscape import apply_document, apply_steps

    started = time.monotonic()
    filename = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            raw = _read_bounded(sys.stdin.buffer, MAX_DOCUMENT_BYTES)
        else:
            with open(path, "rb") as handle:
                raw = _read_bounded(handle, MAX_DOCUMENT_BYTES)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    if raw is None:
        _fail(f"{filename}: the document is larger than {MAX_DOCUMENT_BYTES} bytes; nothing was applied")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{filename}: byte {exc.start} is not UTF-8; nothing was applied")
    svc = services()
    try:
        with progress_bar(apply_steps(dry_run), "dry run" if dry_run else "applying") as advance:
            plan = apply_document(svc.sessions, text, filename, dry_run=dry_run, prune=prune, actor=cli_actor(),
                                  production=svc.settings.production, progress=advance, reactivate=reactivate)
    except (DocumentTooLarge, DocumentTooComplex) as exc:
        _fail(f"{exc.detail}; nothing was applied")
    except ValidationFailed as exc:
        for err in exc.errors:
            where = f"{err['location']}: {err['path']}: " if err.get("path") else f"{err['location']}: "
            click.echo(f"{where}{err['message']}", err=True)
        click.echo(f"error: {len(exc.errors)} error(s) in {filename}; nothing was applied", err=True)
        raise click.exceptions.Exit(2) from None
    for warning in plan.warnings:
        click.echo(f"warning: {warning['location']}: {warning['path']}: {warning['message']}", err=True)
    for line in plan.lines():
        click.echo(line)
    for line in plan.revocations:
        click.echo(f"{'would queue' if dry_run else 'queued'}: {line} (the worker revokes it at the provider)")
    if dry_run:
        click.echo("dry run: nothing was written")
        return
    counts = plan.counts
    click.echo(f"applied: {counts['create']} created, {counts['update']} updated, {counts['delete']} deleted "
               f"in {time.monotonic() - started:.1f} s")


def _read_bounded(stream, limit: int) -> bytes | None:
    """At most `limit` bytes of `stream`; None if it holds more (the rest is never read into memory)."""
    raw = stream.read(limit + 1)
    return None if len(raw) > limit else raw


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


@click.command("export")
@click.option("-o", "--output", "path", default="-", help="file to write; - (the default) writes stdout")
def export_command(path: str) -> None:
    """Write the landscape as governance.yaml (no secret values)."""
    from govern.landscape import export_document

    text = export_document(services().sessions)
    if path == "-":
        click.echo(text, nl=False)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {path}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(apply_command)
    cli.add_command(export_command)
