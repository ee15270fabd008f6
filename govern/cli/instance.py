"""`govern init`, `govern db upgrade|current`, `govern serve`."""
from __future__ import annotations

import os
import secrets
import sys

import click
from click.core import ParameterSource

from govern.cli.context import echo_json, fail, json_option, services


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(db)
    cli.add_command(serve)


@click.command()
@click.option("--admin-user", default="admin", show_default=True, help="username of the first admin")
def init(admin_user: str) -> None:
    """Create the instance: database schema (through the migrations), secret-store key, first admin."""
    from govern.config import instance_secret_key
    from govern.store import db as store_db
    from govern.store.admins import ensure_first_admin

    svc = services(require_schema=False, create=True)
    settings = svc.settings
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)
    instance_secret_key(settings)
    store_db.upgrade(svc.engine)
    click.echo("database: migrated to the latest schema")
    for step in svc.init_steps:
        click.echo(step(svc))
    password = settings.admin_password
    generated = False
    if not password:
        if sys.stdin.isatty():
            password = click.prompt(f"password for {admin_user}", hide_input=True, confirmation_prompt=True)
        else:
            password, generated = secrets.token_urlsafe(18), True
    created = ensure_first_admin(svc.sessions, admin_user, password)
    if not created:
        click.echo("admin: an admin already exists; none created")
    elif generated:
        click.echo(f"admin: created {admin_user!r} with one-time password: {password}")
        click.echo("       (shown once; change it after signing in)")
    else:
        click.echo(f"admin: created {admin_user!r}")


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations."""
    from govern.store import db as store_db

    svc = services(require_schema=False)
    store_db.upgrade(svc.engine, revision)
    click.echo(f"database: at {', '.join(sorted(store_db.current_revisions(svc.engine)))}")


@db.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """Show the schema revision, and whether migrations are pending."""
    from govern.store import db as store_db

    svc = services(require_schema=False, store_only=True)
    current, heads = store_db.current_revisions(svc.engine), store_db.head_revisions(svc.engine)
    if as_json:
        echo_json({"current": sorted(current), "head": sorted(heads), "up_to_date": current == heads})
    else:
        click.echo(f"current: {', '.join(sorted(current)) or 'none'}; head: {', '.join(sorted(heads))}")
    if current != heads:
        raise click.exceptions.Exit(1)


def gunicorn_argv(host: str, port: int, workers: int | None = None, threads: int | None = None) -> list[str]:
    """The gunicorn command line of `govern serve`: govern.gunicorn_conf holds the settings, options given
    here override it; None leaves the config's (environment's) value."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:govern.gunicorn_conf", "--bind", f"{host}:{port}"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, "govern.wsgi:app()"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="more than 1 runs gunicorn")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="gunicorn threads per worker  [default: GOVERN_WEB_THREADS, else 64]")
@click.option("--with-sandbox", is_flag=True,
              help="also run `govern sandbox` (a local OAuth server and API; development only)")
@click.option("--sandbox-port", default=8900, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int, workers: int, threads: int | None, with_sandbox: bool, sandbox_port: int) -> None:
    """Serve the HTTP API and the console (gunicorn with --workers > 1 or in production).

    With --with-sandbox, the sandbox runs in the same process (development server only); Ctrl-C stops both."""
    if with_sandbox:
        from govern.sandbox import refuse_in_production

        refuse_in_production(os.environ.get("GOVERN_ENV", "development"))  # before anything is loaded or opened
    if not os.environ.get("GOVERN_PUBLIC_URL") and os.environ.get("GOVERN_ENV", "development") != "production":
        # Development: govern's public URL is derived once from the bind (production requires it set).
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - compared, not bound
        shown = f"[{shown}]" if ":" in shown else shown
        os.environ["GOVERN_PUBLIC_URL"] = f"http://{shown}:{port}"
    svc = services()  # refuses a database whose schema is missing or behind
    sandbox = None
    if with_sandbox:
        from govern.cli.sandbox import NEXT_STEPS, start_sandbox

        if workers > 1:
            fail("--with-sandbox runs govern's development server: leave out --workers")
        sandbox = start_sandbox(svc, sandbox_port)
        click.echo(NEXT_STEPS.format(govern=f"http://{host}:{port}"))
    if workers > 1 or svc.settings.production:
        # An option left out leaves GOVERN_WEB_WORKERS / the config's default in force.
        given = click.get_current_context().get_parameter_source("workers") != ParameterSource.DEFAULT
        argv = gunicorn_argv(host, port, workers if given else None, threads)
        os.execvp(argv[0], argv)  # noqa: S606 - gunicorn replaces this process; argv is built by govern
    from govern.app import create_app

    app = create_app(services=svc)
    click.echo(f"govern serving on http://{host}:{port} (development server)"
               + ("; Ctrl-C stops govern and the sandbox" if sandbox else ""))
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    finally:
        if sandbox is not None:
            sandbox.stop()
