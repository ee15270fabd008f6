"""`govern apply` and `govern export`: configuration as code on the command line."""
from __future__ import annotations

import sys
import time

import click

from govern.cli.context import cli_actor, services
from govern.errors import ValidationFailed


@click.command("apply")
@click.option("-f", "--file", "path", required=True, help="governance.yaml to apply; - reads stdin")
@click.option("--dry-run", is_flag=True, help="print the plan, write nothing")
@click.option("--prune", is_flag=True, help="also delete entities that the file does not declare")
def apply_command(path: str, dry_run: bool, prune: bool) -> None:
    """Validate the whole file, print the change plan, and apply it in one transaction.

    An applied change is recorded in the admin action log as `cli:<OS user>`."""
    from govern.cli.progress import progress_bar
    from govern.landscape import apply_document, apply_steps

    started = time.monotonic()
    if path == "-":
        text, filename = sys.stdin.read(), "<stdin>"
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            click.echo(f"error: cannot read {path}: {exc.strerror}", err=True)
            raise click.exceptions.Exit(2)
        filename = path
    sessions = services().sessions
    try:
        with progress_bar(apply_steps(dry_run), "dry run" if dry_run else "applying") as advance:
            plan = apply_document(sessions, text, filename, dry_run=dry_run, prune=prune, actor=cli_actor(),
                                  progress=advance)
    except ValidationFailed as exc:
        for err in exc.errors:
            where = f"{err['location']}: {err['path']}: " if err.get("path") else f"{err['location']}: "
            click.echo(f"{where}{err['message']}", err=True)
        click.echo(f"error: {len(exc.errors)} error(s) in {filename}; nothing was applied", err=True)
        raise click.exceptions.Exit(2)
    for line in plan.lines():
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing was written")
        return
    counts = plan.counts
    click.echo(f"applied: {counts['create']} created, {counts['update']} updated, {counts['delete']} deleted "
               f"in {time.monotonic() - started:.1f} s")


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
