"""`govern rotate` and `govern worker`: thin edges over govern.rotation.runner.RotationService."""
from __future__ import annotations

import signal
import threading

import click

from govern.cli.completion import entity_ids
from govern.cli.context import echo_json, json_option, services
from govern.errors import ValidationFailed



class _RotateGroup(click.Group):
    """`govern rotate [--due | NAME] [--commit]` plus subcommands: anything that is not a subcommand
    name is handed to the default `run` command."""

    def parse_args(self, ctx, args):
        if not args and ctx.resilient_parsing:  # completing the first word: see shell_complete
            return super().parse_args(ctx, args)
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx, incomplete):
        """The first word is a subcommand or the NAME of the default `run`: offer both."""
        return [*super().shell_complete(ctx, incomplete), *entity_ids("secret")(ctx, self, incomplete)]


def _service(**kw):
    import random

    from govern.rotation.wiring import rotation_service

    return rotation_service(services(), rng=random.SystemRandom(), **kw)


def _report(outcomes) -> bool:
    failed = False
    for o in outcomes:
        run = f" run={o.run_id}" if o.run_id is not None else ""
        click.echo(f"{o.status:<22} {o.secret}{run}" + (f"  {o.detail}" if o.detail else ""))
        failed = failed or o.failed
    return failed


@click.group("rotate", cls=_RotateGroup)
def rotate() -> None:
    """Rotate secrets (dry run unless --commit)."""


@rotate.command("run")
@click.argument("name", required=False, shell_complete=entity_ids("secret"))
@click.option("--due", is_flag=True, help="Every secret whose schedule is due.")
@click.option("--commit", is_flag=True, help="Really rotate; without it nothing is written.")
@json_option
def rotate_run(name: str | None, due: bool, commit: bool, as_json: bool) -> None:
    """Rotate NAME, or every due secret with --due."""
    if bool(name) == bool(due):
        raise ValidationFailed("give either a secret NAME or --due")
    svc = _service()
    refs = svc.due() if due else [svc.find_ref(name)]
    if not commit:
        outcomes = svc.plan(refs)
    else:
        outcomes = [svc.rotate(ref.id, force=not due) for ref in refs]
    if as_json:
        echo_json({"dry_run": not commit, "items": [{**o.as_dict(), "failed": o.failed} for o in outcomes]})
        if any(o.failed for o in outcomes):
            raise click.exceptions.Exit(1)
        return
    if not commit:
        click.echo(f"dry run: {len(outcomes)} item(s); nothing was changed (add --commit)")
    failed = _report(outcomes)
    if not outcomes:
        click.echo("nothing is due")
    if failed:
        raise click.exceptions.Exit(1)


@rotate.command("confirm")
@click.argument("run_id", type=int)
@click.option("--by", default="cli", show_default=True, help="Who confirms (recorded in the history).")
def rotate_confirm(run_id: int, by: str) -> None:
    """Confirm that the new secret of a manual rotation is in place at the target."""
    if _report([_service().confirm(run_id, by)]):
        raise click.exceptions.Exit(1)


@rotate.command("retry")
@click.argument("run_id", type=int)
def rotate_retry(run_id: int) -> None:
    """Retry a parked run from the step that failed."""
    if _report([_service().retry(run_id, "cli")]):
        raise click.exceptions.Exit(1)


@rotate.command("history")
@click.argument("name", required=False, shell_complete=entity_ids("secret"))
@click.option("--limit", default=50, show_default=True)
@json_option
def rotate_history(name: str | None, limit: int, as_json: bool) -> None:
    """Past and current rotation runs, newest first."""
    from govern.store.rotation_history import list_runs

    runs = list_runs(services(store_only=True).sessions, secret=name, limit=limit)
    if as_json:
        echo_json(runs)
        return
    if not runs:
        click.echo(f"no rotation runs{f' for {name}' if name else ''} yet (`govern rotate --due` shows what is due)")
        return
    for r in runs:
        steps = ",".join(f"{s['step']}:{s['outcome']}" for s in r["steps"])
        click.echo(f"{r['id']:>6} {r['secret']:<40} {r['state']:<22} attempts={r['attempts']} "
                   f"started={r['started_at']} {steps}" + (f" error={r['error']}" if r["error"] else ""))


def _parse_interval(text: str) -> float:
    from govern.rotation.schedule import parse_interval

    return parse_interval(text).total_seconds()


@click.command("worker")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option("--interval", default="30s", show_default=True, help="Pause between passes (e.g. 30s, 5m).")
def worker(once: bool, interval: str) -> None:
    """Run scheduled jobs: due rotations, resumed runs, revocations, reminders, queued proxy calls and
    signing-key retirement (govern.worker). SIGTERM stops it cleanly after the current item."""
    pause = _parse_interval(interval)
    stop = threading.Event()

    def _stop(signum, _frame):
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed = False
    try:
        import time

        from govern.worker import describe_pass, jobs, run_pass_by_job

        svc = _service()
        job_list = jobs(services(), svc)
        click.echo(f"worker {svc.worker_id} started; " + ("one pass" if once else f"a pass every {pause:g}s"), err=True)
        passes = 0
        while not stop.is_set():
            # Each job fails alone (logged, reported as a failed item); an outage is retried next pass.
            started = time.monotonic()
            by_job = run_pass_by_job(services(), job_list)
            passes += 1
            failed = _report([o for _, outcomes in by_job for o in outcomes]) or failed
            click.echo(describe_pass(passes, by_job, time.monotonic() - started), err=True)
            if once:
                break
            stop.wait(pause)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("worker stopped", err=True)
    if once and failed:
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(rotate)
    cli.add_command(worker)
