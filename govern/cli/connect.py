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
from govern.cli.context import cli_actor, fail, services


@click.group("credentials")
def credentials() -> None:
    """External credentials: connect principals."""


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


def register(cli: click.Group) -> None:
    cli.add_command(credentials)
