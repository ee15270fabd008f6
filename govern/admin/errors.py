"""Friendly HTML error pages under /admin (the API keeps problem+json). Never a stack trace or exception text."""
from __future__ import annotations

from flask import g, render_template, request

_HINTS = {
    400: "The form has expired or did not come from this page. Go back, reload and try again.",
    401: "Please sign in.",
    403: "Your role does not allow this.",
    404: "There is nothing here.",
    405: "This page does not accept that kind of request.",
    500: "Something went wrong on our side. Quote the correlation id when reporting it.",
}


def is_console_request() -> bool:
    return request.path.startswith("/admin")


def render_error(status: int, title: str, detail: str | None = None):
    body = render_template("govern_admin/error.html", status=status, title=title,
                           detail=detail or _HINTS.get(status, _HINTS[500]),
                           correlation_id=getattr(g, "correlation_id", None))
    return body, status
