"""Commands contributed by the feature packages; one line each."""
from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    from govern.cli import landscape

    landscape.register(cli)
    from govern.cli import secrets as secrets_cli

    secrets_cli.register(cli)
    from govern.cli import rotation

    rotation.register(cli)
    from govern.cli import audit; audit.register(cli)  # noqa: E702
