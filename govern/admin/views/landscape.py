"""Systems (with their integration contract), external credentials, principals and named credentials."""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup
from sqlmodel import select

from govern.admin import commands
from govern.admin import connect as console_connect
from govern.admin.principal_state import authorize_origin, credential_principal_states, principal_state
from govern.admin.roles import has_role, require_role
from govern.admin.views.actions import actor, correlation, perform
from govern.admin.views.base import ReadOnlyView, fmt_list, readable, relative_time, secret_status, secrets_markup
from govern.store.tables import ExternalCredential, IntegrationUser, Principal, System
from govern.secrets.service import credential_fields
from govern.domain.secret import Secret
from govern.broker.upstream import build_connect_service, build_revocation_queue
from govern.broker.upstream.revocation_queue import disconnect_principal
from govern.errors import GovernError


def _json_block(view, context, model, name):
    return readable(getattr(model, name))


def _system_name(view, context, model, name):
    row = view.session.get(System, model.system_id)
    return row.external_id if row else model.system_id


def _credential_name(view, context, model, name):
    row = view.session.get(ExternalCredential, model.credential_id)
    return row.external_id if row else model.credential_id


class SystemView(ReadOnlyView):
    # The list is for finding a system and its owner; the contract's details are on the system's page.
    column_list = ("external_id", "name", "kind", "owner", "daily_api_budget")
    column_details_list = column_list + ("escalation_contact", "rate_limit_per_minute", "api_version_policy",
                                         "runbook_url", "description", "sla", "maintenance_windows", "scopes", "contract",
                                         "created_at", "updated_at")
    column_labels = {"external_id": "Id", "rate_limit_per_minute": "Rate limit / min", "daily_api_budget": "Daily budget",
                     "runbook_url": "Runbook"}
    column_searchable_list = ("external_id", "name", "owner", "kind")
    column_filters = ("kind", "owner")
    column_formatters = {"sla": _json_block, "contract": _json_block, "maintenance_windows": _json_block,
                         "scopes": fmt_list}


def _credential_secrets(view, context, model, name):
    return secrets_markup(secret_status(view.session, "credential", model.external_id))


class CredentialView(ReadOnlyView):
    details_template = "govern_admin/credential.html"
    column_list = ("external_id", "system_id", "protocol", "principal_type", "secrets")
    column_details_list = ("external_id", "system_id", "protocol", "token_url", "authorize_url", "client_id",
                           "client_auth_method", "scopes", "audience", "header_name", "principal_type",
                           "refresh_token_policy", "rotation", "expiry", "secrets", "created_at", "updated_at")
    column_labels = {"external_id": "Id", "system_id": "System", "secrets": "Secrets (write-only)",
                     "expiry": "Declared expiry"}
    column_searchable_list = ("external_id", "client_id", "protocol")
    column_filters = ("protocol", "principal_type", "client_auth_method")
    column_formatters = {"system_id": _system_name, "secrets": _credential_secrets, "scopes": fmt_list,
                         "rotation": _json_block, "expiry": _json_block}

    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["secret_fields"] = credential_fields(model.protocol, model.client_auth_method)
            kwargs["principals"] = self.session.execute(
                select(Principal.name).where(Principal.credential_id == model.id).order_by(Principal.name)).scalars().all()
            kwargs["secret_items"] = secret_status(self.session, "credential", model.external_id)
            kwargs["principal_states"] = credential_principal_states(self.session, model)
            kwargs["when"] = lambda value: relative_time(value, self.services.clock.now())
            _allow_connect_redirect(model)
        return super().render(template, **kwargs)

    @expose("/set-secret/", methods=("POST",))
    def set_secret_view(self):
        """Write one secret field through the secret service: admin only. The value is never echoed back."""
        require_role("admin")
        cred = self.session.execute(select(ExternalCredential).where(
            ExternalCredential.external_id == (request.form.get("credential") or ""))).scalars().first()
        if cred is None:
            abort(404)
        field = request.form.get("field") or ""
        principal = request.form.get("principal") or None
        # A private key comes from the multi-line field (a single-line input loses the PEM's line breaks).
        pem = request.form.get("value_pem") or ""
        value = Secret(pem if field == "private_key" and pem.strip() else request.form.get("value") or "")
        perform(lambda: commands.set_secret(self.services, actor(), owner_kind="credential", owner=cred.external_id,
                                            field=field, principal=principal, value=value,
                                            correlation_id=correlation()),
                lambda status: f"{field} of {cred.external_id} {status.describe()}.")
        return redirect(url_for(".details_view", id=cred.external_id))


def _user_link(view, context, model, name):
    """A per-user principal's integration user, by name and linked (never its database id)."""
    user = view.session.get(IntegrationUser, model.integration_user_id) if model.integration_user_id else None
    if user is None:
        return ""
    return Markup('<a href="{0}">{1}</a>').format(
        url_for("console_integration_users.details_view", id=user.external_id), user.external_id)


def _principal_secrets(view, context, model, name):
    cred = view.session.get(ExternalCredential, model.credential_id)
    return secrets_markup(secret_status(view.session, "credential", cred.external_id, model.name) if cred else [])


def _allow_connect_redirect(cred: ExternalCredential) -> None:
    """A page with an admin's Connect button may send its form on to the upstream's authorize page."""
    origin = authorize_origin(cred)
    if origin and has_role("admin"):
        g.csp_form_origins = (origin,)


class PrincipalView(ReadOnlyView):
    """A principal is named by its credential and its name: `?id=shop-rt/alice`. Its page shows its connection
    and, for an admin, Connect (or Reconnect): the authorization code flow with PKCE (govern.admin.connect)."""

    details_template = "govern_admin/principal.html"

    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            cred = self.session.get(ExternalCredential, model.credential_id)
            if cred is not None:
                kwargs["state"] = principal_state(self.session, cred, model)
                kwargs["when"] = self._when
                _allow_connect_redirect(cred)
        return super().render(template, **kwargs)

    def _when(self, value):
        return relative_time(value, self.services.clock.now())

    @expose("/connect/", methods=("POST",))
    def connect_view(self):
        """Start connecting the principal (admin only); the browser goes on to the upstream's authorize page."""
        model, cred = self._posted_principal()
        services = self.services
        if services.connect is None:
            services.connect = build_connect_service(services)
        try:
            url = console_connect.start(services.connect, cred.external_id, model.name, actor())
        except GovernError as exc:
            flash(f"Connecting {model.name} of {cred.external_id} could not start: {exc.detail}.", "error")
            return redirect(url_for(".details_view", id=f"{cred.external_id}/{model.name}"))
        return redirect(url, code=303)

    @expose("/disconnect/", methods=("POST",))
    def disconnect_view(self):
        """Disconnect the principal (admin only): no upstream call for it from now on, and its tokens' revocation
        at the provider queued for the worker (govern.broker.upstream.revocation_queue)."""
        model, cred = self._posted_principal()
        services = self.services
        try:
            report = disconnect_principal(build_revocation_queue(services), services.clock, cred.external_id,
                                          model.name, commit=True, actor=actor())
        except GovernError as exc:
            flash(f"Disconnecting {model.name} of {cred.external_id} failed: {exc.detail}.", "error")
        else:
            queued = sum(1 for item in report.items if item.action == "revoke")
            flash(f"Principal {model.name} of {cred.external_id} is disconnected; "
                  f"{queued} token revocation{'' if queued == 1 else 's'} queued for the worker.", "success")
        return redirect(url_for(".details_view", id=f"{cred.external_id}/{model.name}"))

    def _posted_principal(self) -> tuple[Principal, ExternalCredential]:
        """The principal an admin's POST names (`principal=credential/name`), and its credential; 404 if unknown."""
        require_role("admin")
        model = self.get_one(request.form.get("principal") or "")
        cred = self.session.get(ExternalCredential, model.credential_id) if model is not None else None
        if model is None or cred is None:
            abort(404)
        return model, cred

    def get_pk_value(self, model):
        cred = self.session.get(ExternalCredential, model.credential_id)
        return f"{cred.external_id if cred else ''}/{model.name}"

    def get_one(self, id):
        credential, _, name = str(id).rpartition("/")
        return self.session.execute(select(Principal).join(
            ExternalCredential, ExternalCredential.id == Principal.credential_id).where(
            ExternalCredential.external_id == credential, Principal.name == name)).scalars().first() \
            or self._by_old_number(id)

    column_list = ("credential_id", "name", "kind", "needs_reconnect_at", "secrets")
    column_details_list = column_list + ("subject", "connected_at", "integration_user_id", "created_at")
    column_labels = {"credential_id": "Credential", "secrets": "Secrets (write-only)",
                     "needs_reconnect_at": "Needs reconnect since", "integration_user_id": "Integration user",
                     "connected_at": "Connected"}
    column_searchable_list = ("name", "subject")
    column_filters = ("kind", "needs_reconnect_at")
    column_formatters = {"credential_id": _credential_name, "secrets": _principal_secrets,
                         "integration_user_id": _user_link}


class NamedCredentialView(ReadOnlyView):
    column_list = ("external_id", "credential_id", "url", "api_version", "allowed_methods")
    column_details_list = column_list + ("api_type", "timeout_seconds", "during_maintenance", "allowed_paths",
                                         "retry", "circuit_breaker", "max_body_bytes", "created_at", "updated_at")
    column_labels = {"external_id": "Id", "credential_id": "Credential", "timeout_seconds": "Timeout (s)"}
    column_searchable_list = ("external_id", "url")
    column_filters = ("api_type", "during_maintenance")
    column_formatters = {"credential_id": _credential_name, "allowed_methods": fmt_list, "allowed_paths": fmt_list,
                         "retry": _json_block, "circuit_breaker": _json_block}
