"""`govern contract export SYSTEM`: the system's integration contract as Markdown and JSON."""
from __future__ import annotations

import json
from pathlib import Path

import click

from govern.cli.completion import entity_ids
from govern.cli.context import output_option, services


def register(cli: click.Group) -> None:
    cli.add_command(contract)


@click.group()
def contract() -> None:
    """Integration contracts (seed practice 18)."""


@contract.command("export")
@click.argument("system", shell_complete=entity_ids("system"))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "both"]), default="both", show_default=True)
@output_option("folder to write SYSTEM.md / SYSTEM.json into (default stdout)", type=click.Path(file_okay=False))
def export(system: str, fmt: str, output: str | None) -> None:
    """Write SYSTEM's contract; to stdout unless -o/--output is given."""
    from govern.domain.contract import render_markdown
    from govern.store.contracts import load_contract

    data = load_contract(services().sessions, system)
    outputs = {}
    if fmt in ("md", "both"):
        outputs["md"] = render_markdown(data)
    if fmt in ("json", "both"):
        outputs["json"] = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if output:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        for ext, text in outputs.items():
            (folder / f"{system}.{ext}").write_text(text)
            click.echo(f"wrote {folder / f'{system}.{ext}'}")
    else:
        click.echo("\n".join(outputs.values()))
