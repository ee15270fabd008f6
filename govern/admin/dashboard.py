"""The dashboard (/admin): placeholder replaced below."""
from __future__ import annotations

from flask_admin import AdminIndexView, expose

from govern.admin.roles import ConsoleAccess


class DashboardView(ConsoleAccess, AdminIndexView):
    def __init__(self, services, **kw):
        super().__init__(**kw)
        self.services = services

    @expose("/")
    def index(self):
        return self.render("govern_admin/dashboard.html")
