"""Inline POST buttons for list rows: rendered only for roles allowed to use them, each with a CSRF token."""
from __future__ import annotations

from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape


def post_button(action: str, label: str, fields: dict[str, object], *, css: str = "btn-outline-primary",
                element_id: str | None = None, confirm: str | None = None) -> Markup:
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
    ident = f' id="{escape(element_id)}"' if element_id else ""
    # Plain text in an attribute, read by console.js (static/console.js) which asks before the form is sent:
    # no inline script, so the console's CSP can forbid it (govern/admin/lockdown.py).
    asks = f' data-confirm="{escape(confirm)}"' if confirm else ""
    return Markup(f'<form method="post" action="{escape(action)}" class="d-inline m-0"{asks}>'  # noqa: S704 - values escaped
                  f'<input type="hidden" name="csrf_token" value="{escape(generate_csrf())}">{hidden}'
                  f'<button type="submit" class="btn btn-sm {css}"{ident}>{escape(label)}</button></form>')
