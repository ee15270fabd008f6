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
    _register()
    try:
        cli.main(args=argv, prog_name="govern", standalone_mode=True)
    except GovernError as exc:  # raised outside a command (while loading settings)
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(2)
