"""The HTML audit report: one self-contained file (inline CSS, charts as server-drawn inline SVG, no
external URLs): a summary (severities, sources with the files imported and skipped, counts by rule and severity),
the trend, then each finding once, by source, file and subject, with its remediation."""
from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from govern.audit.engine import SEVERITIES
from govern.audit.time_windows import as_yaml

COLOURS = {"critical": "#8b0000", "high": "#d9480f", "medium": "#e8a700", "low": "#1c7ed6", "info": "#868e96"}
CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}h1,h2,h3{margin:.8em 0 .3em}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.sev{color:#fff;padding:1px 6px;border-radius:3px;font-size:12px}
section{margin-bottom:2em}code{background:#f6f6f6;padding:0 3px;overflow-wrap:anywhere}.muted{color:#777}
table.findings{table-layout:fixed}table.findings td{overflow-wrap:anywhere}
nav ul{columns:3;padding-left:1.2em;margin:.3em 0}"""
# the same column widths in every findings table, so that the per-user sections line up
COLGROUP = ('<colgroup><col style="width:80px"><col style="width:22%"><col style="width:40%"><col></colgroup>')


def _badge(sev: str) -> str:
    return f'<span class="sev" style="background:{COLOURS[sev]}">{escape(sev)}</span>'


def _bar_chart(summary: dict[str, int]) -> str:
    top = max([summary.get(s, 0) for s in SEVERITIES] + [1])
    bars = []
    for i, s in enumerate(SEVERITIES):
        w = int(300 * summary.get(s, 0) / top)
        y = 10 + i * 26
        bars.append(f'<text x="0" y="{y + 14}" font-size="12">{s}</text><rect x="70" y="{y}" width="{w}" height="18" '
                    f'fill="{COLOURS[s]}"/><text x="{75 + w}" y="{y + 14}" font-size="12">{summary.get(s, 0)}</text>')
    return f'<svg role="img" aria-label="findings by severity" width="420" height="150">{"".join(bars)}</svg>'


def _trend_chart(trend: list[dict]) -> str:
    """Open findings per stored run: a line over a zero baseline, each point labelled with its count and
    its run id, so the chart reads without hovering."""
    if not trend:
        return '<p class="muted">No earlier runs.</p>'
    totals = [sum(t["counts"].get(s, 0) for s in SEVERITIES) for t in trend]
    top = max(totals + [1])
    left, right, base, height = 40, 560, 120, 90  # plot area: x from left to right, y from base up by height
    pad = 16  # keep the first point (and its label) clear of the y axis
    step = (right - left - pad) / max(len(trend) - 1, 1)
    label_every = max(1, len(trend) // 15)  # at most ~15 labels: a long history stays legible

    def xy(i: int, v: int) -> tuple[int, int]:
        return int(left + pad + i * step), int(base - height * v / top)

    points = " ".join("{},{}".format(*xy(i, v)) for i, v in enumerate(totals))
    axis = (f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#bbb"/>'
            f'<line x1="{left}" y1="{base - height}" x2="{left}" y2="{base}" stroke="#bbb"/>'
            f'<text x="{left - 6}" y="{base + 4}" font-size="11" text-anchor="end">0</text>'
            f'<text x="{left - 6}" y="{base - height + 4}" font-size="11" text-anchor="end">{top}</text>')
    marks = []
    for i, (t, v) in enumerate(zip(trend, totals, strict=True)):
        x, y = xy(i, v)
        marks.append(f'<circle cx="{x}" cy="{y}" r="3.5" fill="#1c7ed6"><title>run {t["run_id"]}: {v} open, '
                     f'+{t["new"]} new, -{t["resolved"]} resolved, {t["reopened"]} reopened</title></circle>')
        if i % label_every == 0 or i == len(trend) - 1:
            marks.append(f'<text x="{x}" y="{y - 7}" font-size="11" text-anchor="middle">{v}</text>'
                         f'<text x="{x}" y="{base + 16}" font-size="11" text-anchor="middle" fill="#777">'
                         f'#{t["run_id"]}</text>')
    return (f'<svg role="img" aria-label="open findings per run" width="{right + 20}" height="{base + 24}">'
            f'{axis}<polyline fill="none" stroke="#1c7ed6" stroke-width="2" points="{points}"/>{"".join(marks)}'
            f'</svg><p class="muted">Open findings per audit run (run number below each point).</p>')


def _rows(findings: list[dict]) -> str:
    out = []
    for f in findings:
        loc = f.get("location")
        where = f'<br><code>{escape(loc["file"])}:{loc["line"]}</code>' if loc else ""
        status = "" if f["status"] == "open" else f' <span class="muted">({escape(f["status"])})</span>'
        out.append(f'<tr id="{escape(_anchor(f))}"><td>{_badge(f["severity"])}</td><td><code>{escape(f["rule_id"])}</code><br>'
                   f'{escape(f["title"])}{status}</td><td>{escape(f["message"])}{where}</td>'
                   f'<td>{escape(f["remediation"])}</td></tr>')
    return "".join(out)


def _table(findings: list[dict]) -> str:
    return (f'<table class="findings">{COLGROUP}<tr><th>severity</th><th>rule</th><th>finding</th>'
            f'<th>remediation</th></tr>{_rows(findings)}</table>')


def _subject_group(f: dict) -> tuple[str, str]:
    """(heading, anchor) of the entity a finding is about: its integration user, else its subject's entity (a grant
    `set#0` belongs to `set`)."""
    user = f["evidence"].get("user") if isinstance(f.get("evidence"), dict) else None
    if f["subject_kind"] == "integration_user" and not user:
        user = f["subject"].split("/")[0]
    if user:
        return f"Integration user {user}", f"user-{user}"
    head = f["subject"].split("#")[0]
    kind = f["subject_kind"].replace("_", " ")
    return f"{kind[:1].upper()}{kind[1:]} {head}", f"{f['subject_kind']}-{head}"


def _anchor(f: dict) -> str:
    return f"f-{f['fingerprint']}"


def _sources(report: dict[str, Any], findings: list[dict]) -> str:
    rows = []
    for src in report.get("sources") or [{"name": report["source"], "kind": report["source"]}]:
        n = sum(1 for f in findings if f.get("source", src["name"]) == src["name"])
        files = "" if src.get("kind") != "salesforce" else (
            f'{src.get("files_imported", 0)} imported, {src.get("files_skipped", 0)} skipped, '
            f'{src.get("files_failed", 0)} failed')
        where = src.get("root") or src.get("directory") or ""
        rows.append(f'<tr><td>{escape(src["name"])}</td><td>{escape(src.get("kind", ""))}</td>'
                    f'<td><code>{escape(where)}</code></td><td>{files}</td><td>{n}</td></tr>')
    return ('<h3>Sources</h3><table><tr><th>source</th><th>kind</th><th>directory</th><th>files</th>'
            f'<th>findings</th></tr>{"".join(rows)}</table>')


def _skipped(report: dict[str, Any]) -> str:
    rows = [f'<tr><td>{escape(i.get("source", ""))}</td><td><code>{escape(i["file"])}</code></td>'
            f'<td>{escape(i["status"])}</td><td>{escape(i.get("message") or "")}</td></tr>'
            for i in report.get("imports") or [] if i["status"] != "imported"]
    if not rows:
        return ""
    return ('<details><summary>Files not imported</summary><table><tr><th>source</th><th>file</th><th>status</th>'
            f'<th>why</th></tr>{"".join(rows)}</table></details>')


def _by_rule(report: dict[str, Any], findings: list[dict]) -> str:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in findings:
        counts[f["rule_id"]][f["severity"]] += 1
    titles = {r["id"]: r["title"] for r in report["rules"]}
    head = "".join(f"<th>{s}</th>" for s in SEVERITIES)
    rows = "".join(f'<tr><td><code>{escape(rule)}</code> {escape(titles.get(rule, ""))}</td>'
                   + "".join(f"<td>{counts[rule].get(s, '') or ''}</td>" for s in SEVERITIES)
                   + f"<td>{sum(counts[rule].values())}</td></tr>" for rule in sorted(counts))
    return f"<h3>Findings by rule and severity</h3><table><tr><th>rule</th>{head}<th>total</th></tr>{rows}</table>"


def _grouped(report: dict[str, Any], findings: list[dict]) -> list[str]:
    """Each finding once: by source, then by the file it is in (findings without a file last), then by subject."""
    tree: dict[str, dict[str, dict[tuple[str, str], list[dict]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for f in findings:
        loc = f.get("location")
        tree[f.get("source") or report["source"]][loc["file"] if loc else ""][_subject_group(f)].append(f)
    order = [s["name"] for s in report.get("sources") or []]
    parts, used_ids = [], set()
    for source in sorted(tree, key=lambda s: (order.index(s) if s in order else len(order), s)):
        files = tree[source]
        parts.append(f'<section><h2>Source {escape(source)}</h2>')
        for file in sorted(files, key=lambda x: (x == "", x)):
            parts.append(f'<h3>{"Not from a file" if not file else "File <code>" + escape(file) + "</code>"}</h3>')
            for (heading, anchor) in sorted(files[file]):
                group = sorted(files[file][(heading, anchor)],
                               key=lambda f: ((f.get("location") or {}).get("line", 0), SEVERITIES.index(f["severity"])))
                ident = f' id="{escape(anchor)}"' if anchor not in used_ids else ""
                used_ids.add(anchor)
                parts.append(f"<h4{ident}>{escape(heading)}</h4>{_table(group)}")
                if anchor.startswith("user-"):
                    for rec in report["rightsizing"]:
                        if f"user-{rec['user']}" == anchor and rec.get("proof"):
                            p = rec["proof"]
                            parts.append(f'<p>Right-sizing: {len(rec["unused"])} unused grants; replaying '
                                         f'{p["replayed_requests"]} requests against the recommendation denies '
                                         f'{p["would_deny"]}.</p>')
        parts.append("</section>")
    return parts


def _time_windows(report: dict[str, Any]) -> str:
    """Right-sizing in time: the window each user's calls fell in, to paste under its permission sets."""
    items = [(r["user"], r["time_window"]) for r in report["rightsizing"]
             if (r.get("time_window") or {}).get("conditions")]
    if not items:
        return ""
    out = ["<section><h2>Right-sizing: time windows from observed use</h2>"]
    for user, w in items:
        p = w["proof"]
        out.append(f'<h3 id="window-{escape(user)}">{escape(user)}</h3><p>All {w["observed_requests"]} allowed calls '
                   f'fell in these days and hours ({escape(w["time_zone"])}); replaying them against the window denies '
                   f'{p["would_deny"]}. Add it to the permission sets '
                   f'{", ".join("<code>" + escape(s) + "</code>" for s in w["permission_sets"])}:</p>'
                   f'<pre>{escape(as_yaml(w["conditions"]))}</pre>')
    out.append("</section>")
    return "".join(out)


def to_html(report: dict[str, Any]) -> str:
    findings = report["findings"]
    run = report["run"]
    parts = [f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>govern audit '
             f'({escape(report["source"])})</title><style>{CSS}</style></head><body>',
             f'<h1>Least-privilege audit: {escape(report["source"])}</h1>',
             f'<p class="muted">Generated {escape(report["generated_at"])}; usage window {report["window_days"]} days.'
             f'</p><section><h2>Summary</h2>{_bar_chart(report["summary"])}'
             f'<p>{report["summary"]["total"]} findings, {report["summary"]["suppressed"]} suppressed. Since the last '
             f'run: {len(run.get("new", []))} new, {len(run.get("resolved", []))} resolved, '
             f'{len(run.get("reopened", []))} reopened.</p>{_sources(report, findings)}{_skipped(report)}'
             f'{_by_rule(report, findings)}</section>',
             f'<section><h2>Trend</h2>{_trend_chart(report["trend"])}</section>']
    serious = [f for f in findings if f["severity"] in ("critical", "high") and f["status"] == "open"]
    if serious:  # what to fix first: links to the findings below, each of which is shown once
        links = "".join(f'<li>{_badge(f["severity"])} <a href="#{escape(_anchor(f))}"><code>{escape(f["rule_id"])}'
                        f'</code> {escape(f["subject"])}</a></li>' for f in serious)
        parts.append(f'<nav><h2>Fix first: {len(serious)} critical and high findings</h2><ul>{links}</ul></nav>')
    parts += _grouped(report, findings)
    parts.append(_time_windows(report))
    parts.append("<section><h2>Rules</h2><table><tr><th>rule</th><th>severity</th><th>rationale</th>"
                 "<th>remediation</th></tr>" + "".join(
                     f'<tr><td><code>{escape(r["id"])}</code> {escape(r["title"])}</td><td>{_badge(r["severity"])}</td>'
                     f'<td>{escape(r["rationale"])}</td><td>{escape(r["remediation"])}</td></tr>'
                     for r in report["rules"]) + "</table></section></body></html>")
    return "".join(parts)
