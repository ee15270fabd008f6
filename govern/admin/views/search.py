"""Global search: one box in the navigation finds any entity by its external id or its name (integration
users, permission sets, named credentials, systems, credentials, findings, suppressions) and links to its
page by name. Read-only, for every role."""
from __future__ import annotations

import sqlalchemy as sa
from flask import request, url_for
from flask_admin import BaseView, expose

from govern.admin.roles import ConsoleAccess
from govern.store.tables import (ExternalCredential, Finding, IntegrationUser, NamedCredential, PermissionSet,
                                 Suppression, System)

PER_KIND = 20
MAX_QUERY = 200

# (kind label, model, endpoint of its page, columns searched, how a hit is described)
KINDS = (
    ("Integration user", IntegrationUser, "console_integration_users", ("external_id", "name", "owner"),
     lambda r: r.name if r.name != r.external_id else r.owner or ""),
    ("Permission set", PermissionSet, "console_permission_sets", ("external_id", "description"),
     lambda r: r.description or ""),
    ("Named credential", NamedCredential, "console_named_credentials", ("external_id", "url"), lambda r: r.url),
    ("System", System, "console_systems", ("external_id", "name", "owner"), lambda r: r.name),
    ("Credential", ExternalCredential, "console_credentials", ("external_id", "client_id"),
     lambda r: r.protocol.replace("_", " ")),
    ("Finding", Finding, "console_findings", ("external_id", "rule_id", "subject", "title"),
     lambda r: f"{r.rule_id} {r.status}: {r.title}"),
    ("Suppression", Suppression, "console_suppressions", ("external_id", "rule_id", "subject", "ticket"),
     lambda r: f"{r.rule_id} {r.subject} until {r.expires_at.isoformat()}"),
)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SearchView(ConsoleAccess, BaseView):
    def __init__(self, session, **kw):
        super().__init__(**kw)
        self.session = session

    def is_visible(self) -> bool:
        return False  # reached from the box in the navigation, not from the menu

    @expose("/")
    def index(self):
        query = (request.args.get("q") or "").strip()[:MAX_QUERY]
        groups = []
        if query:
            needle = _like(query.lower())
            for label, model, endpoint, columns, describe in KINDS:
                condition = sa.or_(*(sa.func.lower(getattr(model, c)).like(needle, escape="\\") for c in columns))
                exact = sa.case((sa.func.lower(model.external_id) == query.lower(), 0), else_=1)
                rows = self.session.execute(sa.select(model).where(condition).order_by(exact, model.external_id)
                                            .limit(PER_KIND + 1)).scalars().all()
                if rows:
                    groups.append({"kind": label, "more": len(rows) > PER_KIND, "hits": [
                        {"name": self._title(model, r), "detail": describe(r),
                         "url": url_for(f"{endpoint}.details_view", id=r.external_id)} for r in rows[:PER_KIND]]})
        return self.render("govern_admin/search.html", query=query, groups=groups,
                           total=sum(len(g["hits"]) for g in groups))

    @staticmethod
    def _title(model, row) -> str:
        if model is Finding:
            return f"{row.subject_kind.replace('_', ' ')} {row.subject}"
        return row.external_id
