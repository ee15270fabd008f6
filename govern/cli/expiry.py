"""`govern expiry [--within DAYS] [--json]`: what expires, soonest first (docs/expiry.md): declared client-secret
expiry dates, refresh tokens by their lifetimes, and certificates govern holds."""
from __future__ import annotations

import click

from govern.cli.context import echo_json, json_option, services


@click.command("expiry")
@click.option("--within", "within_days", type=click.IntRange(min=0), default=None,
              help="only what expires within this many days (expired items included); default: everything")
@json_option
def expiry(within_days: int | None, as_json: bool) -> None:
    """List client secrets, refresh tokens and certificates with their expiry and the days left."""
    from govern.domain.expiry import whole_days
    from govern.store.expiry import read_forecast

    svc = services(store_only=True)
    now = svc.clock.now()
    lead = svc.settings.expiry_alert_days
    items = read_forecast(svc.sessions, now, within_days)
    if as_json:
        echo_json([{**f.as_dict(), "alerting": f.days_left <= lead} for f in items])
        return
    if not items:
        click.echo("nothing expires" + (f" within {within_days} days" if within_days is not None else ""))
        return
    for f in items:
        days = whole_days(f.days_left)
        when = "expired" if f.expired else f"{days} day{'s' if days != 1 else ''} left"
        flags = [f.item.source] + ([] if f.item.rotation else ["no rotation schedule"])
        click.echo(f"{f.item.kind}\t{f.item.credential}\t{f.item.subject}\t{f.item.expires_at.isoformat()}"
                   f"\t{when}{' (alerting)' if f.days_left <= lead else ''}\t{', '.join(flags)}")


def register(cli: click.Group) -> None:
    cli.add_command(expiry)
