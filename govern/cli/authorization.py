"""`govern policies validate [DIR]` (the decision log's commands are in govern/cli/decisions.py)."""
from __future__ import annotations

from pathlib import Path

import click

from govern.cli.context import echo_json, json_option


def register(cli: click.Group) -> None:
    from govern.cli.decisions import log_group

    cli.add_command(policies)
    cli.add_command(log_group)


@click.group()
def policies() -> None:
    """Guardrail policies kept as code (Cedar)."""


@policies.command("validate")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@json_option
def policies_validate(directory: Path | None, as_json: bool) -> None:
    """Check every policy in DIR (default GOVERN_POLICIES_DIR) against govern's Cedar schema."""
    from govern.config import load_settings
    from govern.policy.guardrails import policies_directory, validate_directory

    directory = directory or policies_directory(load_settings())
    reports, problems = validate_directory(directory)
    failed = len(problems) + sum(1 for r in reports if not r.ok)
    if as_json:
        echo_json({"directory": str(directory), "valid": not failed, "problems": list(problems),
                   "policies": [{"id": r.policy_id, "file": str(r.file), "ok": r.ok, "errors": list(r.errors)}
                                for r in reports]})
        if failed:
            raise click.exceptions.Exit(2)
        return
    for report in reports:
        if report.ok:
            click.echo(f"{report.policy_id}: OK ({report.file})")
        else:
            click.echo(f"{report.policy_id}: ERROR ({report.file}): {'; '.join(report.errors)}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if failed:
        click.echo(f"{failed} problem(s) in {directory}", err=True)
        raise click.exceptions.Exit(2)
    click.echo(f"{len(reports)} policies valid in {directory}")
