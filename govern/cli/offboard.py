"""`govern offboard USER [--commit]`: offboard an integration user, revoking upstream what govern holds for it
(RFC 7009; issue #21, docs/offboarding.md).

A dry run unless `--commit`: it lists, per item, what would be revoked at the provider, deleted from govern and
disabled, and changes nothing. With `--commit` it does it (govern.broker.upstream.revocation.OffboardService),
reports each item, and exits 1 if a revocation failed (after its retries; the failure is logged, alerted and
recorded as a decision). No token value is printed.
"""
from __future__ import annotations

import click

from govern.cli.completion import entity_ids
from govern.cli.context import cli_actor, echo_json, json_option, services


@click.command("offboard")
@click.argument("user", shell_complete=entity_ids("integration_user"))
@click.option("--commit", is_flag=True, help="do it (without: a dry run that changes nothing)")
@json_option
def offboard(user: str, commit: bool, as_json: bool) -> None:
    """Revoke the upstream tokens govern holds for USER's per-user principals, disconnect them and retire USER."""
    from govern.broker.upstream import build_offboard_service
    from govern.secrets.service import secret_service

    svc = services()
    actor = cli_actor()
    secrets = secret_service(svc)
    report = build_offboard_service(svc, delete_secret=lambda ref: secrets.delete(ref, actor=actor)).run(
        user, commit=commit)
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(f"Offboarding {user}:" if commit
                   else f"Dry run, nothing changed (pass --commit to do it). Offboarding {user} would:")
        for item in report.items:
            detail = f": {item.detail}" if item.detail else ""
            # A failed revocation's detail already says how many attempts it gave up after.
            tries = f" after {item.attempts} attempts" if item.attempts > 1 and "attempts" not in detail else ""
            click.echo(f"  {item.outcome:<8} {item.describe()}{detail}{tries}")
        if report.failed:
            click.echo(f"{len(report.failed)} item(s) failed; run the command again to retry them", err=True)
    if report.failed:
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(offboard)
