"""`govern secrets put|delete|status|rotate-key|migrate`. Secret values come from stdin or a file, never argv."""
from __future__ import annotations

import sys

import click

from govern.cli.completion import entity_ids, principals
from govern.cli.context import cli_actor, echo_json, fail, json_option, services


def register(cli: click.Group) -> None:
    cli.add_command(secrets)


@click.group()
def secrets() -> None:
    """Secret values in the vault (or the local encrypted store); only metadata is ever shown."""


@secrets.command("put")
@click.argument("credential", required=False, shell_complete=entity_ids("credential"))
@click.option("--principal", help="the credential's principal the secret belongs to", shell_complete=principals)
@click.option("--user", "user", shell_complete=entity_ids("integration_user"),
              help="an integration user (its govern client secret) instead of a credential")
@click.option("--field", required=True, help="client_secret, private_key, refresh_token, password, api_key or value")
@click.option("--file", "file", type=click.Path(dir_okay=False, allow_dash=True),
              help="read the value from this file ('-' or absent: stdin)")
def put(credential: str | None, principal: str | None, user: str | None, field: str, file: str | None) -> None:
    """Set a secret: CREDENTIAL [--principal P] --field F, or --user USER --field client_secret."""
    from govern.secrets.service import secret_service

    if bool(credential) == bool(user):
        fail("name either a CREDENTIAL or --user USER")
    if user and principal:
        fail("--principal applies to credentials, not to --user")
    svc = services()
    service = secret_service(svc)
    # Check the target before reading a value, so a typo does not cost a paste.
    service.check_user(user) if user else service.check_credential(credential)
    raw = _read_value(file)
    actor = cli_actor()
    if user:
        status = service.put_for_user(user, field, raw, actor=actor)
    else:
        status = service.put_for_credential(credential, field, raw, principal=principal, actor=actor)
    click.echo(f"{status.ref}: {status.describe()} ({status.store})")


def _read_value(file: str | None) -> bytes:
    if file and file != "-":
        try:
            with open(file, "rb") as fh:
                return fh.read(64 * 1024 + 3)  # enough to tell "too large" without reading a huge file
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
    if sys.stdin is not None and sys.stdin.isatty():
        return click.prompt("secret value", hide_input=True, prompt_suffix=": ", err=True).encode("utf-8")
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read(64 * 1024 + 3) if stream is not None else sys.stdin.read(64 * 1024 + 3).encode("utf-8")


@secrets.command("delete")
@click.argument("refs", nargs=-1, required=True, shell_complete=entity_ids("secret"))
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def delete(refs: tuple[str, ...], yes: bool) -> None:
    """Delete stored secrets by reference (as `govern secrets status` lists them): every version in the store,
    the reference and its rotation history. Reports each item; exit 1 if any failed."""
    from govern.errors import GovernError
    from govern.secrets.service import secret_service

    if not yes:
        if sys.stdin is None or not sys.stdin.isatty():
            fail("deleting secrets cannot be undone; pass --yes to confirm")
        click.confirm(f"Delete {len(refs)} secret(s) and every stored version? This cannot be undone",
                      abort=True, err=True)
    service = secret_service(services())
    actor, failed = cli_actor(), False
    for ref in refs:
        try:
            done = service.delete(ref, actor=actor)
            click.echo(f"{ref}: deleted (version {done['version']}, {done['rotation_runs']} rotation run(s) removed)")
        except GovernError as exc:
            failed = True
            click.echo(f"{ref}: failed: {exc.detail}")
    if failed:
        raise click.exceptions.Exit(1)


@secrets.command("status")
@json_option
def status(as_json: bool) -> None:
    """Every secret reference: ref, store, version, set on. Never a value."""
    from govern.store.secret_status import secret_statuses

    rows = secret_statuses(services(store_only=True).engine.connect)  # a connection: no ORM session, no SQLModel
    if as_json:
        echo_json([r.as_dict() for r in rows])
        return
    if not rows:
        click.echo("no secrets recorded")
        return
    table = [("REF", "STORE", "VERSION", "SET ON")] + [
        (r.ref, r.store, str(r.version or "-"), r.set_at.strftime("%Y-%m-%d %H:%M UTC") if r.set_at else "-")
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@secrets.command("rotate-key")
@click.option("--rewrap-only", is_flag=True,
              help="do not add a key; re-wrap every data key with the current (first) key "
                   "(use after putting a new key first in GOVERN_MASTER_KEY)")
def rotate_key(rewrap_only: bool) -> None:
    """Add a new local master key first in the key list and re-wrap every data key with it."""
    svc = services()
    store = svc.secret_store
    if getattr(store, "kind", None) != "local":
        fail("rotate-key applies to the local store; Vault manages its own keys")
    previous, current, count = store.rotate_key(rewrap_only=rewrap_only)
    click.echo(f"current master key: {current}; re-wrapped {count} data keys")
    if current != previous:
        click.echo(f"the previous key {previous} stays in the key list for decryption until you remove it")


@secrets.command("migrate")
@click.option("--to", "target", type=click.Choice(["vault"]), required=True)
def migrate(target: str) -> None:
    """Move every local secret to Vault: write, read back and compare, then delete locally. Resumable."""
    from govern.secrets import build_keyring
    from govern.secrets.local import LocalSecretStore
    from govern.secrets.migrate import migrate_local_to_vault
    from govern.secrets.vault import VaultSecretStore

    svc = services()
    settings = svc.settings
    if not settings.vault_addr:
        fail("set GOVERN_VAULT_ADDR (and the vault credentials) to migrate to vault")
    local = svc.secret_store if getattr(svc.secret_store, "kind", None) == "local" else \
        LocalSecretStore(svc.sessions, build_keyring(settings, create=False))
    vault = svc.secret_store if getattr(svc.secret_store, "kind", None) == "vault" else \
        VaultSecretStore.from_settings(settings, clock=svc.clock)
    vault.ping()
    results = migrate_local_to_vault(local, vault, svc.sessions)
    for item in results:
        click.echo(f"{item.outcome:9} {item.path}" + (f": {item.detail}" if item.detail else ""))
    failed = sum(1 for r in results if r.outcome == "failed")
    click.echo(f"{len(results) - failed} moved or verified, {failed} failed"
               + ("; run the same command again to retry the failed ones" if failed else ""))
    if not failed and results:
        click.echo("next: set GOVERN_SECRET_STORE=vault")
    if failed:
        raise click.exceptions.Exit(1)
