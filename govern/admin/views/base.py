"""Read-only list/detail views over the store. Writes never go through flask-admin's create/edit/delete
(which would write straight to the session); they are explicit POST actions that call a domain service."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.filters import FilterConverter
from flask_admin.model import filters, typefmt
from markupsafe import Markup, escape
from sqlmodel import select

from govern.admin.roles import ConsoleAccess
from govern.bounds import SQL_ID_MAX, ascii_int
from govern.store.tables import SecretRef


class _Filters(FilterConverter):
    """SQLModel's `str` columns are AutoString, which flask-admin does not know: filter them like strings."""

    @filters.convert("AutoString", "autostring")
    def conv_autostring(self, column, name, **kwargs):
        return self.conv_string(column, name, **kwargs)


class ReadOnlyView(ConsoleAccess, ModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    can_export = False
    can_set_page_size = True
    page_size = 50
    action_disallowed_list = ["delete"]
    form_columns: tuple = ()
    column_display_pk = False
    column_default_sort = ("id", True)
    filter_converter = _Filters()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        labels = {"allowed_cidrs": "Allowed CIDRs", "created_at": "Created", "updated_at": "Updated"}
        cls.column_labels = {**labels, **(cls.__dict__.get("column_labels") or {})}

    # Lists show "3 h ago" with the exact time in a title; a record's page shows the exact time.
    column_type_formatters = {**ModelView.column_type_formatters,
                              dt.datetime: lambda view, value, name: relative_time(value, view.services.clock.now())}
    column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS,
                                     dt.datetime: lambda view, value, name: fmt_time(value)}

    # URLs name a record by its external id (`?id=order-sync`), never by its database id; a view over a table
    # without one names the column that identifies a record instead (None: the record has no page of its own).
    url_key: str | None = "external_id"

    def __init__(self, model, session, services, **kw):
        self.services = services
        super().__init__(model, session, **kw)
        if self.url_key is None:
            self.can_view_details = False
            self.column_display_actions = False  # no page to open: no empty actions column

    def get_pk_value(self, model):
        return getattr(model, self.url_key) if self.url_key else super().get_pk_value(model)

    def get_one(self, id):
        if not self.url_key:
            return None
        column = getattr(self.model, self.url_key)
        if isinstance(column.type, sa.Integer):  # a numbered record (a rotation run): its number, else none
            number = ascii_int(str(id), high=SQL_ID_MAX)
            return self.session.get(self.model, number) if number is not None else None
        found = self.session.execute(select(self.model).where(column == str(id))).scalars().first()
        return found if found is not None else self._by_old_number(id)

    def _by_old_number(self, id):
        """A link saved before pages were named (`?id=12`) still opens its record; no page links that way."""
        number = ascii_int(str(id), high=SQL_ID_MAX)
        return self.session.get(self.model, number) if number is not None else None


def fmt_list(view, context, model, name):
    value = getattr(model, name)
    if not value:
        return Markup('<span class="gv-muted">none</span>')
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return ", ".join(str(v) for v in value)


def fmt_time(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def relative_time(value, now: dt.datetime) -> Markup | str:
    """`3 h ago` or `in 2 d` in a <time> element whose title (and datetime) is the exact UTC time."""
    if not isinstance(value, dt.datetime):
        return fmt_time(value)
    seconds = (_aware(now) - _aware(value)).total_seconds()
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if span >= size:
            amount = f"{int(span // size)} {unit}"
            break
    else:
        return Markup(f'<time datetime="{_aware(value).isoformat()}" title="{fmt_time(value)}">just now</time>')  # noqa: S704 - no user text
    text = f"{amount} ago" if seconds >= 0 else f"in {amount}"
    return Markup(f'<time datetime="{_aware(value).isoformat()}" title="{fmt_time(value)}">{text}</time>')  # noqa: S704 - no user text


def short_id(view, context, model, name):
    """A correlation id shortened to its first 8 characters; the whole id in the title (and in the search)."""
    value = getattr(model, name) or ""
    if len(value) <= 10:
        return Markup(f"<code>{escape(value)}</code>")  # noqa: S704 - values escaped
    return Markup(f'<code title="{escape(value)}">{escape(value[:8])}&hellip;</code>')  # noqa: S704 - values escaped


def secret_status(session, owner_kind: str, owner: str, principal: str | None = None) -> list[dict]:
    """What the console may say about secrets: the field, "set on DATE, version N", and the schedule. Never a value."""
    query = select(SecretRef).where(SecretRef.owner_kind == owner_kind, SecretRef.owner == owner)
    if principal is not None:
        query = query.where(SecretRef.principal == principal)
    rows = session.execute(query.order_by(SecretRef.field)).scalars().all()
    return [{"field": r.field, "principal": r.principal, "ref": r.external_id, "version": r.current_version,
             "set_at": r.set_at, "schedule": r.schedule, "next_due_at": r.next_due_at,
             "text": describe_secret(r)} for r in rows]


def describe_secret(ref: SecretRef) -> str:
    if ref.current_version is None:
        return "not set"
    when = ref.set_at.strftime("%Y-%m-%d") if ref.set_at else "an unknown date"
    return f"set on {when}, version {ref.current_version}"


def secrets_markup(items: list[dict]) -> Markup:
    if not items:
        return Markup('<span class="gv-muted">no secrets referenced</span>')
    parts = [f'<span class="gv-secret">{escape(i["field"])}'
             + (f' ({escape(i["principal"])})' if i["principal"] else "")
             + f'</span>: {escape(i["text"])}' for i in items]
    return Markup("<br>".join(parts))  # noqa: S704 - reviewed: every interpolated value is escaped or a constant


def _label(key: object) -> str:
    return str(key).replace("_", " ")


def readable(value) -> Markup:
    """Structured data (evidence, contracts, retry settings, rotation steps) as fields a person reads: a
    definition list of `name: value`, lists as comma-separated text or bullet lists, never JSON."""
    if value is None or value == "" or value == [] or value == {}:
        return Markup('<span class="gv-muted">none</span>')
    if isinstance(value, dict):
        rows = "".join(f"<dt>{escape(_label(k))}</dt><dd>{readable(v)}</dd>" for k, v in value.items()
                       if not str(k).startswith("_"))
        return Markup(f'<dl class="gv-fields mb-0">{rows}</dl>')  # noqa: S704 - values escaped
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return escape(", ".join(str(v) for v in value))
        return Markup('<ul class="gv-items mb-0">' + "".join(f"<li>{readable(v)}</li>" for v in value)  # noqa: S704 - values escaped
                      + "</ul>")
    if isinstance(value, bool):
        return escape("yes" if value else "no")
    return escape(str(value))


def fmt_readable(view, context, model, name):
    return readable(getattr(model, name))
