"""`govern admin create-user|token`: console users and management API tokens."""
from __future__ import annotations

import sys

import click

from govern.cli.context import services


def register(cli: click.Group) -> None:
    cli.add_command(admin)


@click.group()
def admin() -> None:
    """Console users and management API tokens."""


@admin.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "operator", "auditor"]), required=True)
def create_user(username: str, role: str) -> None:
    """Create a console user; the password is read from stdin (never from argv)."""
    from govern.store.admins import create_admin

    if sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    create_admin(services().sessions, username, password, role)
    click.echo(f"created {role} {username!r}")


@admin.command("token")
@click.argument("username")
@click.option("--label", default="")
@click.option("--days", default=90, show_default=True, type=int)
def token(username: str, label: str, days: int) -> None:
    """Issue a management API token (printed once)."""
    from govern.store.admins import issue_token

    click.echo(issue_token(services().sessions, username, label, days))
