"""`govern doctor`: each part of this instance with ok, or what is wrong and how to fix it. Exit 1 when
anything is wrong (govern.ops.doctor holds the checks; nothing is created or changed)."""
from __future__ import annotations

import click

from govern.cli.context import echo_json, json_option


def register(cli: click.Group) -> None:
    cli.add_command(doctor)


@click.command("doctor")
@json_option
def doctor(as_json: bool) -> None:
    """Check the instance folder, the database and its migrations, the secret store, Redis, the policies
    and the public URL; print ok or a fix for each; exit 1 when something is wrong."""
    from govern.config import load_settings
    from govern.errors import ConfigurationError
    from govern.logs import configure_logging
    from govern.ops.doctor import Check, run_checks

    configure_logging("ERROR")  # the report says what failed; adapters' warnings would repeat it
    try:
        checks = run_checks(load_settings())
    except ConfigurationError as exc:
        checks = [Check("settings", False, exc.detail, "fix the GOVERN_* variable it names")]
    failed = [c.name for c in checks if not c.ok]
    if as_json:
        echo_json({"ok": not failed, "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix or None}
                                                for c in checks]})
        if failed:
            raise click.exceptions.Exit(1)
        return
    width = max(len(c.name) for c in checks)
    for check in checks:
        click.echo(f"{'ok' if check.ok else 'FAIL':<4}  {check.name:<{width}}  {check.detail}")
        if not check.ok and check.fix:
            click.echo(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    if failed:
        click.echo(f"{len(failed)} problem(s): {', '.join(failed)}")
        raise click.exceptions.Exit(1)
    click.echo("all checks passed")
