"""`govern credentials connect CREDENTIAL PRINCIPAL`: start connecting a principal (authorization code with
PKCE, RFC 6749 section 4.1 and RFC 7636) and print the URL to open.

The consent ends at govern's `GET /oauth/callback`, served by the running govern, which exchanges the code
and stores the refresh token. The same service as `POST /api/v1/credentials/{id}/principals/{name}/connect`
(govern.broker.upstream.connect.ConnectService) does the work. The state and the PKCE verifier are kept,
sealed, in the cache, so this command needs the cache the server uses (GOVERN_REDIS_URL): an in-process
cache would vanish when the command exits and the callback would find nothing.
"""
from __future__ import annotations

import click

from govern.cli.completion import entity_ids, principals
from govern.cli.context import cli_actor, echo_json, fail, json_option, services


@click.group("credentials")
def credentials() -> None:
    """External credentials: connect and disconnect principals."""


@credentials.command("connect")
@click.argument("credential", shell_complete=entity_ids("credential"))
@click.argument("principal", shell_complete=principals)
@click.option("--govern-url", envvar="GOVERN_PUBLIC_URL", required=True,
              help="govern's public base URL; the upstream redirects to <URL>/oauth/callback (env GOVERN_PUBLIC_URL)")
@click.option("--login-hint", default=None, help="passed on to the upstream's authorize page (RFC 7636 login_hint)")
def connect(credential: str, principal: str, govern_url: str, login_hint: str | None) -> None:
    """Print the authorize URL to open in a browser; the callback completes the connection."""
    from govern.broker.upstream import build_connect_service

    svc = services()
    if getattr(svc.cache, "kind", "") == "memory":
        fail("connecting from the command line needs the server's shared state (the database, or Redis with "
             "GOVERN_REDIS_URL); this instance keeps it in one process")
    redirect_uri = govern_url.rstrip("/") + "/oauth/callback"
    result = build_connect_service(svc).start(credential, principal, redirect_uri, login_hint=login_hint,
                                              actor=cli_actor())
    click.echo(f"Open this URL within {result['expires_in'] // 60} minutes to connect principal {principal!r} "
               f"of {credential!r}:", err=True)
    click.echo(result["authorize_url"])


@credentials.command("disconnect")
@click.argument("credential", shell_complete=entity_ids("credential"))
@click.argument("principal", shell_complete=principals)
@click.option("--commit", is_flag=True, help="do it (without: a dry run that changes nothing)")
@json_option
def disconnect(credential: str, principal: str, commit: bool, as_json: bool) -> None:
    """Disconnect a principal: marked disconnected at once (no upstream call until it is connected again), and
    its stored refresh token and cached access tokens queued for revocation at the provider (RFC 7009), which
    `govern worker` carries out (`govern revocations` shows them)."""
    from govern.broker.upstream import build_revocation_queue
    from govern.broker.upstream.revocation_queue import disconnect_principal

    svc = services()
    report = disconnect_principal(build_revocation_queue(svc), svc.clock, credential, principal, commit=commit,
                                  actor=cli_actor())
    if as_json:
        echo_json(report.as_dict())
        return
    click.echo(f"Disconnecting principal {principal} of {credential}:" if commit else
               f"Dry run, nothing changed (pass --commit to do it). Disconnecting principal {principal} of "
               f"{credential} would:")
    for item in report.items:
        click.echo(f"  {item.outcome:<8} {item.describe()}" + (f": {item.detail}" if item.detail else ""))


def register(cli: click.Group) -> None:
    cli.add_command(credentials)
