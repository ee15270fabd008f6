"""Links from a figure to the filtered console list behind it (the dashboard's numbers).

flask-admin encodes a list filter as `flt<n>_<arg>=value`, where `<arg>` depends on the filter's position in
the view; these helpers find the filter by its label and operation instead, so that a link keeps working
when a view's filters are reordered.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, url_for

Condition = tuple[str, str, object]  # (filter label, operation, value), e.g. ("Outcome", "equals", "deny")


def list_url(endpoint: str, *conditions: Condition) -> str:
    admin = current_app.extensions["govern_admin"]
    view = next(v for v in admin._views if v.endpoint == endpoint)
    args: dict[str, Any] = {}  # as url_for types its **values (with str values, mypy matches them to _external)
    for n, (label, operation, value) in enumerate(conditions):
        arg = next(arg for arg, (_, flt) in view._filter_args.items()
                   if flt.name == label and str(flt.operation()) == operation)
        args[f"flt{n}_{arg}"] = _text(value)
    return url_for(f"{endpoint}.index_view", **args)


def _text(value: object) -> str:
    if isinstance(value, dt.datetime):
        # flask-admin's datetime filters parse this format; the database holds UTC.
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value.tzinfo else value.strftime(
            "%Y-%m-%d %H:%M:%S")
    return str(value)
