"""Helpers for the console's write endpoints: run one command, flash its outcome, never echo input values."""
from __future__ import annotations

import datetime as dt

from flask import flash, g

from govern.errors import GovernError, ValidationFailed


def perform(command, success) -> bool:
    """Run `command()`; flash `success` or the service's own messages. GovernError details are written to be
    shown (they never carry secret values); any other exception propagates to the friendly 500 page."""
    try:
        result = command()
    except ValidationFailed as exc:
        for error in exc.errors:
            where = error.get("location") or ""
            flash(f"{where}: {error['message']}" if where else error["message"], "error")
        return False
    except GovernError as exc:
        flash(exc.detail, "error")
        return False
    flash(success(result) if callable(success) else success, "success")
    return True


def actor() -> str:
    return g.console_user.username


def correlation() -> str | None:
    return getattr(g, "correlation_id", None)


def parse_list(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").replace("\n", ",").split(",") if part.strip()]


def parse_date(raw: str | None, location: str) -> dt.date | None:
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise ValidationFailed([{"location": location, "message": "use a date like 2027-03-31"}]) from None
