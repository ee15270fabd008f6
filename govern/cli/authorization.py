"""`govern policies validate [DIR]`, `govern log show` and `govern log verify`."""
from __future__ import annotations

from pathlib import Path

import click


def register(cli: click.Group) -> None:
    cli.add_command(policies)
    cli.add_command(log_group)


@click.group()
def policies() -> None:
    """Guardrail policies kept as code (Cedar)."""


@policies.command("validate")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def policies_validate(directory: Path | None) -> None:
    """Check every policy in DIR (default GOVERN_POLICIES_DIR) against govern's Cedar schema."""
    from govern.config import load_settings
    from govern.policy.guardrails import validate_directory

    directory = directory or load_settings().policies_dir
    reports, problems = validate_directory(directory)
    for report in reports:
        if report.ok:
            click.echo(f"{report.policy_id}: OK ({report.file})")
        else:
            click.echo(f"{report.policy_id}: ERROR ({report.file}): {'; '.join(report.errors)}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    failed = len(problems) + sum(1 for r in reports if not r.ok)
    if failed:
        click.echo(f"{failed} problem(s) in {directory}", err=True)
        raise click.exceptions.Exit(2)
    click.echo(f"{len(reports)} policies valid in {directory}")


@click.group("log")
def log_group() -> None:
    """The tamper-evident decision log."""


@log_group.command("show")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="the newest N records")
@click.option("--user", "integration_user", help="only this integration user's decisions")
@click.option("--credential", "named_credential", help="only decisions about this named credential")
def log_show(limit: int, integration_user: str | None, named_credential: str | None) -> None:
    """The newest decisions, oldest first: id, time, allow or deny, action, user, named credential, call,
    upstream status and the deciding rules."""
    import sqlalchemy as sa

    from govern.cli.context import services
    from govern.store.tables import Decision

    query = sa.select(Decision).order_by(Decision.id.desc()).limit(limit)
    if integration_user:
        query = query.where(Decision.integration_user == integration_user)
    if named_credential:
        query = query.where(Decision.named_credential == named_credential)
    with services().sessions() as session:
        rows = session.execute(query).scalars().all()
    if not rows:
        click.echo("no decisions recorded" + (" that match" if integration_user or named_credential else ""))
        return
    for row in reversed(rows):
        call = f"{row.method or ''} {row.path or ''}".strip() or "-"
        upstream = row.upstream_status if row.upstream_status is not None else "-"
        click.echo(f"{row.id:>6} {row.at:%Y-%m-%d %H:%M:%S} {'allow' if row.allowed else 'deny ':<5} {row.action:<8} "
                   f"{row.integration_user or '-'} {row.named_credential or '-'} {call} upstream={upstream} "
                   f"{','.join(row.rules)}")


@log_group.command("verify")
def log_verify() -> None:
    """Walk the hash chain; report the first edited or deleted record (exit 1), or `chain intact`."""
    from govern.broker.decision_log import verify_log
    from govern.cli.context import services

    report = verify_log(services().engine)
    if report.intact:
        click.echo(f"chain intact: {report.records} records")
        return
    click.echo(f"chain broken: {report.problem} ({report.records} records verified before it)")
    raise click.exceptions.Exit(1)
