"""Commands contributed by the feature packages."""
from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    from govern.cli import (audit, authorization, connect, dlq, doctor, expiry, landscape, offboard, revocations,
                            rotation, sandbox, secrets as secrets_cli)

    for module in (secrets_cli, landscape, authorization, dlq, audit, rotation, connect, offboard, revocations, sandbox,
                   doctor, expiry):
        module.register(cli)
