"""Shared CLI plumbing: settings and services built once per invocation through the composition root."""
from __future__ import annotations

import click

from govern.bootstrap import Services, build_services
from govern.config import load_settings
from govern.logs import configure_logging


def services() -> Services:
    ctx = click.get_current_context()
    root = ctx.find_root()
    found = root.meta.get("govern.services")
    if found is None:
        settings = load_settings()
        configure_logging(settings.log_level if settings.log_level.upper() != "INFO" else "WARNING")
        found = build_services(settings)
        root.meta["govern.services"] = found
        root.call_on_close(found.close)
    return found


def fail(message: str) -> None:
    """One clear line, exit code 2."""
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)
