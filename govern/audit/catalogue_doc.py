"""Render the rule catalogue in docs/audit.md: a summary table, then one section per rule anchored by its id in
lower case (`docs/audit.md#gov-access-001`, the SARIF rules' helpUri) with its practice and remediation.
Regenerate with `python -m govern.audit.catalogue_doc docs/audit.md` (a test keeps the two in step)."""
from __future__ import annotations

import sys
from pathlib import Path

from govern.audit.engine import catalogue
from govern.audit.report import rule_anchor

BEGIN, END = "<!-- rules:begin -->", "<!-- rules:end -->"


def table() -> str:
    rows = ["| id | severity | title | practice |", "|---|---|---|---|"]
    for r in catalogue().values():
        rows.append(f"| [`{r.id}`](#{rule_anchor(r.id)}) | {r.severity} | {r.title} | {r.rationale.replace('|', '/')} |")
    for r in catalogue().values():
        rows += ["", f'<a id="{rule_anchor(r.id)}"></a>', "", f"### {r.id}: {r.title}", "",
                 f"Severity: **{r.severity}**. Practice: {r.rationale}", "", f"Remediation: {r.remediation}"]
    return "\n".join(rows)


def render(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(render(path.read_text()))
