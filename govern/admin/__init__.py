"""The web console at /admin: flask-admin views, sign-in, roles, and a dashboard.

`init_admin(app)` is called once by govern.app._register_blueprints. Views read through a scoped
SQLAlchemy session; every write goes through a domain service and is recorded in AdminAction.
"""
from __future__ import annotations

from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import scoped_session, sessionmaker

from govern.admin import auth, lockdown, sso
from govern.admin.dashboard import DashboardView
from govern.admin.roles import current_user, has_role
from govern.admin.views import build_views


def init_admin(app) -> None:
    services = app.extensions["govern"]
    # CSRF is checked for /admin only (auth.install); the bearer-token API has no cookies to ride on.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", services.settings.session_lifetime_seconds)
    csrf = CSRFProtect(app)
    auth.install(app, csrf)
    app.register_blueprint(auth.bp)
    lockdown.install(app)
    sso.install(app, services.settings)
    app.jinja_env.globals["console_user"] = current_user
    app.jinja_env.globals["can"] = has_role

    db = scoped_session(sessionmaker(bind=services.engine))
    app.teardown_appcontext(lambda _exc: db.remove())
    admin = Admin(app, name="govern", url="/admin",
                  index_view=DashboardView(services, name="Dashboard", url="/admin"),
                  theme=Bootstrap4Theme(base_template="govern_admin/master.html", swatch="flatly", fluid=True))
    for view in build_views(db, services):
        admin.add_view(view)
    app.extensions["govern_admin"] = admin
