"""`govern revocations [--json] [--retry-failed]`: the upstream revocation queue (issue #21, docs/offboarding.md).

Lists what `govern worker` still has to revoke at a provider (pending, with the next attempt), what failed after
its last attempt (alerted), and what was done or skipped in the last `--days` days. No token value is shown: an
item names the credential, the principal and the kind of token. `--retry-failed` makes failed items due again
(after the provider is back, or the credential's revocation settings are fixed and applied).
"""
from __future__ import annotations

import datetime as dt

import click

from govern.cli.context import echo_json, json_option, services


@click.command("revocations")
@click.option("--days", default=7, show_default=True, type=click.IntRange(0, 3650),
              help="also list items finished in the last DAYS days")
@click.option("--retry-failed", is_flag=True, help="make the failed items due again (the worker retries them)")
@json_option
def revocations(days: int, retry_failed: bool, as_json: bool) -> None:
    """The upstream token revocations queued for the worker: pending, failed, and done recently."""
    from govern.broker.upstream import build_revocation_queue

    svc = services()
    queue = build_revocation_queue(svc)
    now = svc.clock.now()
    retried = queue.retry_failed(now) if retry_failed else 0
    items = queue.listing(finished_since=now - dt.timedelta(days=days))
    counts = queue.counts()
    if as_json:
        echo_json({"counts": counts, "retried": retried, "items": [i.as_dict() for i in items]})
        return
    if retry_failed:
        click.echo(f"{retried} failed item(s) due again")
    click.echo(f"{counts.get('pending', 0)} pending, {counts.get('failed', 0)} failed, "
               f"{counts.get('done', 0)} done, {counts.get('skipped', 0)} skipped")
    for item in items:
        when = ""
        if item.status == "pending" and item.next_attempt_at is not None:
            when = f" next attempt {item.next_attempt_at.isoformat(timespec='seconds')}"
        user = f" user {item.integration_user}" if item.integration_user else ""
        click.echo(f"  {item.id:>5} {item.status:<8} {item.describe()}{user} [{item.reason}] "
                   f"attempts {item.attempts}{when}" + (f": {item.detail}" if item.detail else ""))


def register(cli: click.Group) -> None:
    cli.add_command(revocations)
