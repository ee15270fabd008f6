"""`govern sandbox`: the local OAuth server and API to try govern on one machine (never in production).

`govern serve --with-sandbox` runs the same sandbox beside govern in one process (both stop with Ctrl-C).
"""
from __future__ import annotations

import click

from govern.cli.context import cli_actor, fail, services

NEXT_STEPS = """\
next steps, in a second terminal in this folder (README.md, "Try it"):
  give the integration user sandbox-app a client secret (govern secrets put --user sandbox-app --field client_secret),
  get a govern token at {govern}/oauth/token, then an upstream token from
  {govern}/api/v1/named-credentials/sandbox-orders/token and a proxied answer from
  {govern}/api/v1/named-credentials/sandbox-items/proxy/api/items; see the decision with `govern log show`"""


def register(cli: click.Group) -> None:
    cli.add_command(sandbox)


def start_sandbox(svc, port: int):
    """Refuse production, bind the port, store the generated secrets into govern; return the running server."""
    from govern.sandbox import SandboxSecrets, SandboxServer, provision, refuse_in_production

    refuse_in_production(svc.settings.env)
    generated = SandboxSecrets.generate()
    try:
        server = SandboxServer(generated, port=port, log=lambda line: click.echo(line, err=True)).start()
    except OSError as exc:
        fail(f"the sandbox cannot listen on 127.0.0.1:{port}: {exc.strerror or exc} "
             "(is another sandbox running? choose another with --sandbox-port / --port)")
    try:
        lines = provision(svc, generated, actor=cli_actor())
    except BaseException:
        server.stop()
        raise
    click.echo(f"sandbox: OAuth server and API on {server.url} (development only); "
               "its secrets, generated now, are stored in govern:")
    for line in lines:
        click.echo(f"  {line}")
    return server


@click.command("sandbox")
@click.option("--port", default=8900, show_default=True, type=click.IntRange(0, 65535),
              help="the port of examples/governance.yaml's sandbox named credentials (0: any free port)")
def sandbox(port: int) -> None:
    """Run a local OAuth 2.0 server (client credentials, rotating refresh token) and an API (bearer token or
    API key) on 127.0.0.1, storing its secrets into govern. A development tool: refused in production.
    Logs one line per request it receives, never a secret. Ctrl-C stops it."""
    import os

    from govern.sandbox import refuse_in_production

    refuse_in_production(os.environ.get("GOVERN_ENV", "development"))  # before anything is loaded or opened
    server = start_sandbox(services(), port)
    click.echo(NEXT_STEPS.format(govern="http://127.0.0.1:8000"))
    click.echo("sandbox running; Ctrl-C stops it", err=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    click.echo("sandbox stopped", err=True)
