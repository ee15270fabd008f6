"""The HTML audit report: one self-contained file (inline CSS, charts as server-drawn inline SVG, no
external URLs), with a severity summary, the trend, a section per integration user and remediation."""
from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from govern.audit.engine import SEVERITIES

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
        out.append(f'<tr><td>{_badge(f["severity"])}</td><td><code>{escape(f["rule_id"])}</code><br>'
                   f'{escape(f["title"])}{status}</td><td>{escape(f["message"])}{where}</td>'
                   f'<td>{escape(f["remediation"])}</td></tr>')
    return "".join(out)


def _table(findings: list[dict]) -> str:
    return (f'<table class="findings">{COLGROUP}<tr><th>severity</th><th>rule</th><th>finding</th>'
            f'<th>remediation</th></tr>{_rows(findings)}</table>')


def to_html(report: dict[str, Any]) -> str:
    by_user: dict[str, list[dict]] = defaultdict(list)
    others = []
    for f in report["findings"]:
        user = f["evidence"].get("user") if isinstance(f.get("evidence"), dict) else None
        if f["subject_kind"] == "integration_user" and not user:
            user = f["subject"].split("/")[0]
        (by_user[user] if user else others).append(f)
    run = report["run"]
    parts = [f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>govern audit '
             f'({escape(report["source"])})</title><style>{CSS}</style></head><body>',
             f'<h1>Least-privilege audit: {escape(report["source"])}</h1>',
             f'<p class="muted">Generated {escape(report["generated_at"])}; usage window {report["window_days"]} days.'
             f'</p><section><h2>Summary</h2>{_bar_chart(report["summary"])}'
             f'<p>{report["summary"]["total"]} findings, {report["summary"]["suppressed"]} suppressed. Since the last '
             f'run: {len(run.get("new", []))} new, {len(run.get("resolved", []))} resolved, '
             f'{len(run.get("reopened", []))} reopened.</p></section>',
             f'<section><h2>Trend</h2>{_trend_chart(report["trend"])}</section>']
    serious = [f for f in report["findings"] if f["severity"] in ("critical", "high") and f["status"] == "open"]
    if serious:  # what to fix first, whichever section it belongs to below
        parts.append(f'<section><h2>Critical and high findings</h2>{_table(serious)}</section>')
    if by_user:
        def worst(fs):
            return min(SEVERITIES.index(f["severity"]) for f in fs)
        links = "".join(f'<li><a href="#user-{escape(u)}">{escape(u)}</a> {_badge(SEVERITIES[worst(by_user[u])])} '
                        f'<span class="muted">{len(by_user[u])}</span></li>' for u in sorted(by_user))
        parts.append(f'<nav><h2>Integration users</h2><ul>{links}</ul></nav>')
    for user in sorted(by_user):
        parts.append(f'<section id="user-{escape(user)}"><h2>Integration user {escape(user)}</h2>'
                     f'{_table(by_user[user])}')
        for rec in report["rightsizing"]:
            if rec["user"] == user and rec.get("proof"):
                p = rec["proof"]
                parts.append(f'<p>Right-sizing: {len(rec["unused"])} unused grants; replaying {p["replayed_requests"]} '
                             f'requests against the recommendation denies {p["would_deny"]}.</p>')
        parts.append("</section>")
    if others:
        parts.append(f'<section><h2>Landscape and metadata</h2>{_table(others)}</section>')
    parts.append("<section><h2>Rules</h2><table><tr><th>rule</th><th>severity</th><th>rationale</th>"
                 "<th>remediation</th></tr>" + "".join(
                     f'<tr><td><code>{escape(r["id"])}</code> {escape(r["title"])}</td><td>{_badge(r["severity"])}</td>'
                     f'<td>{escape(r["rationale"])}</td><td>{escape(r["remediation"])}</td></tr>'
                     for r in report["rules"]) + "</table></section></body></html>")
    return "".join(parts)
