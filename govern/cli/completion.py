"""Shell completion of entity ids: `shell_complete` callbacks that read the instance's database.

Completion runs on every press of Tab, in the user's shell: where there is no instance, no database or no
schema, or anything else goes wrong, it offers nothing and prints nothing (an exception would be shown to the
user as a traceback in the middle of the command line). docs/operations.md says how to enable it.
"""
from __future__ import annotations

import click
from click.shell_completion import CompletionItem


def entity_ids(kind: str):
    """A `shell_complete` callback offering the external ids of `kind` (govern.store.names.TABLES)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        from govern.store.names import external_ids

        return _offer(lambda engine: external_ids(engine, kind, incomplete))

    return complete


def principals(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The principals of the CREDENTIAL already on the command line (of every credential if none is)."""
    from govern.store.names import principal_names

    credential = ctx.params.get("credential")
    return _offer(lambda engine: principal_names(engine, credential, incomplete))


def _offer(read) -> list[CompletionItem]:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = _read(read)
    except Exception:  # noqa: BLE001, S110 - see the module docstring: completion offers nothing instead
        return []
    return [CompletionItem(name) for name in names]


def _read(read) -> list[str]:
    from govern.cli.context import missing_instance
    from govern.config import load_settings
    from govern.store.db import make_engine

    settings = load_settings()
    if missing_instance(settings):
        return []  # connecting to a SQLite path that does not exist would create the file
    extra = {} if settings.database_url.startswith("sqlite") else {"connect_args": {"connect_timeout": 2}}
    engine = make_engine(settings.database_url, **extra)
    try:
        return read(engine)
    finally:
        engine.dispose()
