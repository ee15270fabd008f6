"""`govern audit`, `govern audit report`, `govern audit suppress|suppressions`, `govern import salesforce|list|remove`."""
from __future__ import annotations

import datetime as dt
import json
import re
import sys

import click

from govern.cli.context import echo_json, fail, json_option, output_option, services

FORMATS = ("json", "html", "csv", "sarif")
SEVERITY_CHOICES = ("critical", "high", "medium", "low", "info")


def _window(value: str) -> int:
    m = re.fullmatch(r"(\d+)d?", value.strip())
    if not m or int(m.group(1)) < 1:
        fail(f"--window must be a number of days like 30d, not {value!r}")
    return int(m.group(1))


def _render(report: dict, fmt: str) -> str:
    from govern.audit import html, report as rep

    if fmt == "json":
        return rep.to_json(report)
    if fmt == "csv":
        return rep.to_csv(report)
    if fmt == "sarif":
        return json.dumps(rep.to_sarif(report), indent=2, default=str)
    return html.to_html(report)


def _write(text: str, out: str | None) -> None:
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text)


_VALUE_OPTIONS = {"--format", "-o", "--output", "--out", "--fail-on", "--window", "--source", "--recommend", "--dir"}


class _AuditGroup(click.Group):
    """`govern audit [OPTIONS] [DIR]` and `govern audit suppress|suppressions`: a bare DIR becomes --dir."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands:
            out, i = [], 0
            while i < len(args):
                a = args[i]
                if a in _VALUE_OPTIONS and i + 1 < len(args):
                    out += [a, args[i + 1]]
                    i += 2
                    continue
                out += [a] if a.startswith("-") else ["--dir", a]
                i += 1
            args = out
        return super().parse_args(ctx, args)


@click.group("audit", cls=_AuditGroup, invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json")
@output_option("write the report to FILE (default stdout)", type=click.Path(dir_okay=False, writable=True))
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), help="exit 1 when an open finding is at/above this")
@click.option("--window", default="30d", show_default=True, help="usage window for right-sizing")
@click.option("--source", help="audit only this source: govern, or an imported org's name (default: every source)")
@click.option("--recommend", type=click.Path(dir_okay=False, writable=True),
              help="write the right-sized permission sets as governance.yaml")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="audit this Salesforce metadata directory alone, without importing it")
@click.pass_context
def audit(ctx, fmt, output, fail_on, window, source, recommend, directory):
    """Audit every source (govern's landscape and each imported org), store the run, and write its report
    (JSON, HTML, CSV or SARIF). `govern audit report` renders a stored run again."""
    if ctx.invoked_subcommand is not None:
        return
    from govern.audit.engine import at_or_above
    from govern.cli.progress import progress_bar
    from govern.store.audit_service import audit_steps, run_audit, source_names

    window_days, svc = _window(window), services()
    with progress_bar(audit_steps(len(source_names(svc, source, directory))), "auditing") as advance:
        outcome = run_audit(svc, source=source, directory=directory, window_days=window_days, progress=advance)
    _write(_render(outcome.report, fmt), output)
    if recommend and outcome.recommendation is not None:
        import yaml

        with open(recommend, "w", encoding="utf-8") as fh:
            yaml.safe_dump(outcome.recommendation, fh, sort_keys=False)
    _echo_time_windows(outcome.report)
    summary = outcome.report["summary"]
    click.echo("findings: " + " ".join(f"{s}={summary[s]}" for s in SEVERITY_CHOICES) +
               f" suppressed={summary['suppressed']}", err=True)
    if fail_on and any(f["status"] == "open" and at_or_above(f["severity"], fail_on)
                       for f in outcome.report["findings"]):
        sys.exit(1)


def _echo_time_windows(report) -> None:
    """Each recommended time window (govern.audit.time_windows), ready to paste into governance.yaml."""
    import textwrap

    from govern.audit.time_windows import as_yaml

    for rec in report["rightsizing"]:
        window = rec.get("time_window") or {}
        if not window.get("conditions"):
            continue
        click.echo(f"time window for {rec['user']}: its {window['observed_requests']} allowed calls fell in it "
                   f"(replay denies {window['proof']['would_deny']}); add to permission set(s) "
                   f"{', '.join(window['permission_sets'])}:", err=True)
        click.echo(textwrap.indent(as_yaml(window["conditions"]), "  ").rstrip("\n"), err=True)


@audit.command("report")
@click.argument("run", required=False, type=click.IntRange(1, 2**63 - 1))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="write here (default stdout)")
def report(run, fmt, output):
    """Render a stored audit run (the latest by default) without auditing again."""
    from govern.store.audit_service import stored_report

    _write(_render(stored_report(services(), run), fmt), output)


@audit.command("suppress")
@click.argument("rule")
@click.argument("subject")
@click.option("--owner", required=True)
@click.option("--justification", required=True)
@click.option("--ticket", required=True)
@click.option("--until", "until", required=True, help="expiry date YYYY-MM-DD; the finding reopens after it")
def suppress(rule, subject, owner, justification, ticket, until):
    """Accept the risk of one finding (RULE and SUBJECT; SUBJECT may be a glob) until a date."""
    from govern.store.audit_runs import add_suppression
    from govern.store.db import session_scope

    try:
        until_date = dt.date.fromisoformat(until)
    except ValueError:
        fail(f"--until must be a date YYYY-MM-DD, not {until!r}")
    svc = services()
    with session_scope(svc.sessions) as session:
        row = add_suppression(session, rule, subject, owner, justification, ticket, until_date, svc.clock.now().date(),
                              created_by="cli")
        click.echo(f"suppressed {rule} {subject} until {row.expires_at} ({row.external_id})")


@audit.command("suppressions")
@json_option
def suppressions(as_json):
    """List suppressions; expired ones no longer hide their findings."""
    from govern.store.audit_runs import list_suppressions
    from govern.store.db import session_scope

    svc = services(store_only=True)
    today = svc.clock.now().date()
    with session_scope(svc.sessions) as session:
        rows = list_suppressions(session)
        if as_json:
            echo_json([{"id": s.external_id, "rule": s.rule_id, "subject": s.subject, "owner": s.owner,
                        "justification": s.justification, "ticket": s.ticket, "created_by": s.created_by,
                        "expires_at": s.expires_at.isoformat(),
                        "state": "active" if s.expires_at >= today else "expired"} for s in rows])
            return
        if not rows:
            click.echo("no suppressions")
        for s in rows:
            state = "active" if s.expires_at >= today else "expired"
            click.echo(f"{s.external_id}\t{s.rule_id}\t{s.subject}\t{s.owner}\t{s.ticket}\t{s.expires_at}\t{state}")


@click.group("import")
def import_group():
    """Import external metadata."""


@import_group.command("salesforce")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", help="the org's name as an audit source (default: the directory's name); "
                             "replaces the previous import of that name")
@click.option("--to-landscape", "landscape", type=click.Path(dir_okay=False, writable=True),
              help="also write a governance.yaml starting point from the org's integration surface to FILE")
def import_salesforce(directory, name, landscape):
    """Import Salesforce metadata (DX source or metadata API format) and keep it as an audit source."""
    from pathlib import Path

    from govern.store.audit_service import import_salesforce as read
    from govern.store.audit_sources import check_name, save_import
    from govern.store.db import session_scope

    name = check_name(Path(directory).resolve().name if name is None else name)
    svc = services()
    result = read(directory, svc.clock.now())
    for o in result.outcomes:
        if o.status == "error":
            click.echo(f"error\t{o.message}", err=True)
        else:
            click.echo(f"{o.status}\t{o.kind or '-'}\t{o.file}" + (f"\t{o.message}" if o.message else "")
                       + (f"\tunknown elements: {o.unknown}" if o.unknown else ""))
    if result.imported == 0:
        fail(f"nothing could be imported from {directory}")
    with session_scope(svc.sessions) as session:
        row = save_import(session, name, directory, result, svc.clock.now())
        click.echo(f"source={row.name} imported={row.files_imported} skipped={row.files_skipped} "
                   f"failed={row.files_failed} (`govern audit` audits it)")
    if landscape:  # from the model as kept: secret-looking values already redacted
        from govern.audit.adopt import to_landscape

        text = to_landscape(result.model, name, directory=str(directory), now=svc.clock.now())
        try:
            Path(landscape).write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {landscape}: {exc.strerror}")
        click.echo(f"landscape={landscape} ({text.count('# DECIDE:')} decisions marked `# DECIDE:`; check it with "
                   f"`govern apply -f {landscape} --dry-run`)")


@import_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
def import_list(as_json):
    """List the imported orgs that `govern audit` audits."""
    from govern.store.audit_sources import describe, list_imports
    from govern.store.db import session_scope

    with session_scope(services().sessions) as session:
        rows = [describe(r) for r in list_imports(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no imported orgs")
    for r in rows:
        click.echo(f"{r['name']}\t{r['kind']}\t{r['imported_at']}\timported={r['files_imported']} "
                   f"skipped={r['files_skipped']} failed={r['files_failed']}\t{r['directory']}")


@import_group.command("remove")
@click.argument("name")
def import_remove(name):
    """Forget an imported org and its findings (stored runs keep their reports)."""
    from govern.store.audit_sources import remove_import
    from govern.store.db import session_scope

    with session_scope(services().sessions) as session:
        gone = remove_import(session, name)
    click.echo(f"removed {name} and its {gone} finding(s)")


def register(cli: click.Group) -> None:
    cli.add_command(audit)
    cli.add_command(import_group)
