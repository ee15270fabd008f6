"""`govern log ...`: read, verify, checkpoint and export the tamper-evident decision log."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from govern.cli.completion import entity_ids
from govern.cli.context import echo_json, json_option
from govern.domain.decision_chain import OUTCOMES


@click.group("log")
def log_group() -> None:
    """The tamper-evident decision log."""


def _services(**kw):
    from govern.cli.context import services

    return services(**kw)


@log_group.command("show")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="newest N records")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="only allowed, denied or failed decisions")
@click.option("--user", "integration_user", help="integration user (or claimed OAuth client id)",
              shell_complete=entity_ids("integration_user"))
@click.option("--credential", "named_credential", help="named credential", shell_complete=entity_ids("named_credential"))
@click.option("--action", help="token, proxy, proxy_delivery, oauth_token, connect")
@click.option("--correlation-id", help="one request's records")
@json_option
def log_show(limit, outcome, integration_user, named_credential, action, correlation_id, as_json) -> None:
    """The newest decisions, oldest first: id, time, outcome, action, who, what, upstream status, rules."""
    from govern.store.decisions import query_decisions

    svc = _services(store_only=True)
    with svc.sessions() as session:
        _, items = query_decisions(session, outcome=outcome, integration_user=integration_user,
                                   named_credential=named_credential, action=action,
                                   correlation_id=correlation_id, limit=limit, newest_first=True)
    if as_json:
        echo_json(list(reversed(items)))
        return
    if not items:
        filtered = any((outcome, integration_user, named_credential, action, correlation_id))
        click.echo("no decisions recorded" + (" that match" if filtered else ""))
        return
    for item in reversed(items):
        target = item["named_credential"] or item["resource_object"] or "-"
        call = f"{item['method'] or ''} {item['path'] or ''}".strip() or "-"
        upstream = item["upstream_status"] if item["upstream_status"] is not None else "-"
        why = ",".join(item["rules"]) + (f" [{item['error_code']}]" if item["error_code"] else "")
        click.echo(f"{item['id']:>8} {item['at']} {item['outcome']:<5} {item['action']:<14} "
                   f"{item['integration_user'] or '-'} {target} {call} upstream={upstream} {why}")


@log_group.command("verify")
@click.option("--anchor", "anchor_file", type=click.Path(dir_okay=False, path_type=Path),
              help="checkpoints exported earlier (`govern log checkpoint -o FILE`), kept outside the database")
@json_option
def log_verify(anchor_file: Path | None, as_json: bool) -> None:
    """Check every record's MAC and link, and the chain against the signed checkpoints. Names every edited
    record and every gap (a deleted tail, up to the last checkpoint) and exits 1; else `chain intact`."""
    anchors = _read_checkpoints(anchor_file) if anchor_file else []
    report = _services().decision_log.verify(anchors)
    if as_json:
        echo_json({"intact": report.intact, "records": report.records, "checkpoints": report.checkpoints,
                    "problems": list(report.problems), "store_down": list(report.store_down),
                    "unprotected": list(report.unprotected)})
        if not report.intact:
            raise click.exceptions.Exit(1)
        return
    if report.store_down:
        click.echo(f"note: {len(report.store_down)} record(s) were written while the secret store was down, "
                   f"unkeyed ({_ids(report.store_down)}); "
                   + (f"{len(report.unprotected)} of them are not yet covered by a signed checkpoint "
                      f"({_ids(report.unprotected)}): run `govern log checkpoint`"
                      if report.unprotected else "every one is covered by a signed checkpoint"))
    if report.intact:
        click.echo(f"chain intact: {report.records} records, {report.checkpoints} signed checkpoints")
        return
    click.echo(f"chain broken: {len(report.problems)} problem(s) in {report.records} records")
    for problem in report.problems:
        click.echo(f"  {problem}")
    raise click.exceptions.Exit(1)


def _ids(ids: tuple[int, ...]) -> str:
    """Record ids as ranges: 3..7, 12."""
    parts, start, prev = [], None, None
    for rid in ids:
        if start is None:
            start = prev = rid
        elif rid == prev + 1:
            prev = rid
        else:
            parts.append(f"{start}..{prev}" if prev > start else str(start))
            start = prev = rid
    if start is not None:
        parts.append(f"{start}..{prev}" if prev > start else str(start))
    return ", ".join(parts)


@log_group.command("checkpoint")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="append the new checkpoint to FILE (JSON lines), to keep it outside the database")
@click.option("--all", "show_all", is_flag=True, help="print every stored checkpoint, not only the new one")
def log_checkpoint(output: Path | None, show_all: bool) -> None:
    """Sign the chain's head now (key id, head record and hash, time, HMAC) and print it as JSON."""
    from govern.store.decision_records import checkpoints

    svc = _services()
    new = svc.decision_log.checkpoint()
    lines = [_checkpoint_json(cp) for cp in (checkpoints(svc.engine) if show_all else [new])]
    if output:
        with open(output, "a", encoding="utf-8") as fh:
            fh.write(_checkpoint_json(new) + "\n")
    for line in lines:
        click.echo(line)


@log_group.command("export")
@click.option("--after", type=click.IntRange(0), default=None, help="records with an id above ID")
@click.option("--cursor", "cursor_file", type=click.Path(dir_okay=False, path_type=Path),
              help="resume after the id kept in FILE, and keep the last exported id there")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="append to FILE instead of stdout")
@click.option("--limit", type=click.IntRange(1), default=None, help="at most N records")
def log_export(after: int | None, cursor_file: Path | None, output: Path | None, limit: int | None) -> None:
    """Write records as JSON lines for a SIEM, in id order, resumable from a cursor."""
    from govern.store.decision_records import iter_records

    start = after
    if start is None and cursor_file is not None and cursor_file.exists():
        text = cursor_file.read_text().strip()
        if not text.isdigit():
            raise click.UsageError(f"{cursor_file} does not hold a record id")
        start = int(text)
    start = start or 0
    svc = _services()
    out = open(output, "a", encoding="utf-8") if output else click.get_text_stream("stdout")  # noqa: SIM115 - closed below
    last, count = start, 0
    try:
        for rec in iter_records(svc.engine, after=start):
            out.write(json.dumps(export_record(rec), separators=(",", ":"), ensure_ascii=False) + "\n")
            last, count = rec["id"], count + 1
            if limit and count >= limit:
                break
        out.flush()
    finally:
        if output:
            out.close()
    if cursor_file is not None:
        tmp = cursor_file.with_name(cursor_file.name + ".tmp")
        tmp.write_text(f"{last}\n")
        os.replace(tmp, cursor_file)  # the cursor moves only after the records are written
    click.echo(f"exported {count} records (last id {last})", err=True)


@log_group.command("rotate-key")
def log_rotate_key() -> None:
    """Make a new chain key active; records signed by the previous keys keep verifying."""
    kid = _services().decision_keys.rotate()
    click.echo(f"decision log key rotated: new records are signed with {kid}")


def export_record(rec: dict) -> dict:
    out = dict(rec)
    out["at"] = rec["at"].isoformat()
    return out


def _checkpoint_json(cp: dict) -> str:
    return json.dumps({"id": cp.get("id"), "at": cp["at"].isoformat(), "key_id": cp["key_id"],
                       "head_id": cp["head_id"], "head_hash": cp["head_hash"], "mac": cp["mac"]},
                      separators=(",", ":"))


def _read_checkpoints(path: Path) -> list[dict]:
    import datetime as dt

    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            found.append({"id": raw.get("id"), "at": dt.datetime.fromisoformat(raw["at"]), "key_id": raw["key_id"],
                          "head_id": int(raw["head_id"]), "head_hash": raw["head_hash"], "mac": raw["mac"]})
        except (ValueError, KeyError, TypeError):
            raise click.UsageError(f"{path}:{n} is not a checkpoint") from None
    return found
