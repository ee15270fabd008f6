"""`govern dlq list|retry ID...|drop ID...|deliver`: the proxy's maintenance queue and dead-letter queue.
Each item reports its outcome; the command exits 1 if any item failed."""
from __future__ import annotations

import click

from govern.cli.context import echo_json, json_option, services


@click.group("dlq")
def dlq() -> None:
    """Calls that kept failing after a maintenance window."""


@dlq.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every dead-lettered call: id, named credential, method, path, attempts, last status, correlation id."""
    from govern.store.proxy_queue import ProxyQueueRepo

    items = ProxyQueueRepo(services(store_only=True).sessions, row_locks=False).dead_letters()
    if as_json:
        # Metadata only: the call's headers and body stay in the queue (they may carry a caller's data).
        echo_json([{"id": i.id, "named_credential": i.named_credential, "system": i.system, "caller": i.caller,
                    "principal": i.principal, "method": i.method, "path": i.path, "attempts": i.attempts,
                    "last_status": i.last_status, "reason": i.reason, "correlation_id": i.correlation_id,
                    "created_at": i.created_at.isoformat() if i.created_at else None} for i in items])
        return
    if not items:
        click.echo("the dead-letter queue is empty")
        return
    for item in items:
        click.echo(f"{item.id}\t{item.named_credential}\t{item.method} {item.path}\tattempts={item.attempts}"
                   f"\treason={item.reason}\tcorrelation_id={item.correlation_id}")


def _batch(ids, action) -> None:
    failed = 0
    svc = services()
    for dead_id in ids:
        outcome = action(svc.proxy.queued, dead_id)
        click.echo(f"{dead_id}: {'ok' if outcome.ok else 'failed'}: {outcome.detail}")
        failed += 0 if outcome.ok else 1
    if failed:
        raise click.exceptions.Exit(1)


@dlq.command("retry")
@click.argument("ids", nargs=-1, type=int, required=True)
def retry(ids) -> None:
    """Send the dead-lettered calls ID... again (with their original Idempotency-Key); report each."""
    from govern.broker.proxy.queue import dlq_retry

    _batch(ids, dlq_retry)


@dlq.command("drop")
@click.argument("ids", nargs=-1, type=int, required=True)
def drop(ids) -> None:
    """Discard the dead-lettered calls ID... once their owner has resubmitted them; report each."""
    from govern.broker.proxy.queue import dlq_drop

    _batch(ids, dlq_drop)


@dlq.command("deliver")
def deliver() -> None:
    """Deliver due queued calls once, in order (what a worker loop does); report each item."""
    from govern.broker.proxy.queue import deliver_queued

    outcomes = deliver_queued(services().proxy.queued)
    if not outcomes:
        click.echo("nothing is due")
    for outcome in outcomes:
        click.echo(f"{outcome.id}: {'ok' if outcome.ok else 'failed'}: {outcome.detail}")
    if any(not o.ok for o in outcomes):
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(dlq)
