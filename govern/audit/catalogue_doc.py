"""Render the rule catalogue as the markdown table in docs/audit.md.
Regenerate with `python -m govern.audit.catalogue_doc docs/audit.md` (a test keeps the two in step)."""
from __future__ import annotations

import sys
from pathlib import Path

from govern.audit.engine import catalogue

BEGIN, END = "<!-- rules:begin -->", "<!-- rules:end -->"


def table() -> str:
    rows = ["| id | severity | title | practice |", "|---|---|---|---|"]
    for r in catalogue().values():
        rows.append(f"| `{r.id}` | {r.severity} | {r.title} | {r.rationale.replace('|', '/')} |")
    return "\n".join(rows)


def render(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(render(path.read_text()))
