"""The command line: one entry point, `govern`. Errors print one clear line and exit with code 2."""
from __future__ import annotations

import sys

import click

from govern.errors import GovernError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GovernError as exc:
            click.echo(f"error: {exc.detail}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="govern")
def cli() -> None:
    """govern: govern how integrations authenticate to the systems they connect."""


def _register() -> None:
    from govern.cli import admin, contract, instance

    for module in (instance, admin, contract):
        module.register(cli)
    try:
        from govern.cli import extensions
    except ImportError:  # pragma: no cover
        return
    extensions.register(cli)


def main(argv: list[str] | None = None) -> None:
    """Every error ends in one line on stderr: `error: ...`, exit code 2 (1 for a batch with failed items)."""
    _register()
    try:
        code = cli.main(args=argv, prog_name="govern", standalone_mode=False)
    except GovernError as exc:  # raised outside a command (while loading settings)
        _fail(exc.detail)
    except click.exceptions.UsageError as exc:
        sub = exc.ctx.command_path.partition(" ")[2] + " " if exc.ctx and " " in exc.ctx.command_path else ""
        _fail(f"{exc.format_message()} (see: govern {sub}--help)")
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        _fail(exc.format_message())
    except OSError as exc:  # a file named on the command line cannot be read or written
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else (exc.strerror or type(exc).__name__))
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
