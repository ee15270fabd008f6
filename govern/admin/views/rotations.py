"""Rotation history (runs and their steps); schedules are on the Secrets view (SecretRef.schedule, next_due_at)."""
from __future__ import annotations


from flask import abort, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup, escape

from govern.admin import commands
from govern.admin.roles import has_role, require_role
from govern.admin.views.actions import actor, perform
from govern.admin.views.base import ReadOnlyView, readable
from govern.admin.views.buttons import post_button
from govern.bounds import SQL_ID_MAX, ascii_int
from govern.store.tables import RotationRun, SecretRef

_STATE_BADGE = {"finished": "success", "failed": "danger", "parked": "danger", "cancelled": "secondary"}


def _state(view, context, model, name):
    return Markup(f'<span class="badge badge-{_STATE_BADGE.get(model.state, "info")}">{escape(model.state)}</span>')  # noqa: S704 - values escaped


def _secret(view, context, model, name):
    ref = view.session.get(SecretRef, model.secret_ref_id)
    return ref.external_id if ref else model.secret_ref_id


def _steps(view, context, model, name):
    # Steps hold step names, times and outcomes written by the rotation service, never values.
    return readable(model.steps or [])


def _run_actions(view, context, model, name):
    if model.state != "parked" or not has_role("operator"):
        return ""
    acknowledged = any(step.get("step") == "acknowledge" for step in (model.steps or []))
    ref = view.session.get(SecretRef, model.secret_ref_id)
    secret = ref.external_id if ref else f"secret {model.secret_ref_id}"
    parts = [post_button(url_for(".retry_view"), "Retry", {"run": model.id}, css="btn-outline-primary mr-1",
                         element_id=f"gv-retry-{model.id}",
                         confirm=f"Retry rotation run {model.id} of {secret}? A worker starts it again.")]
    if not acknowledged:
        parts.append(post_button(url_for(".acknowledge_view"), "Acknowledge", {"run": model.id},
                                 css="btn-outline-secondary", element_id=f"gv-ack-{model.id}",
                                 confirm=f"Acknowledge the parked rotation run {model.id} of {secret}? "
                                         "It stops being reported as failed."))
    return Markup("".join(parts))  # noqa: S704 - reviewed: every interpolated value is escaped or a constant


class RotationRunView(ReadOnlyView):
    """Rotation history. Operators retry or acknowledge parked runs (govern.rotation.runner.RotationService)."""

    url_key = "id"  # the run's number is its public id (/api/v1/rotations/<id>, `govern rotation` commands)
    column_list = ("started_at", "secret_ref_id", "state", "attempts", "error", "actions")
    column_details_list = column_list + ("rotator", "dry_run", "pending_version", "next_attempt_at", "finished_at",
                                         "claimed_by", "claimed_until", "steps")
    column_labels = {"secret_ref_id": "Secret", "started_at": "Started"}
    column_searchable_list = ("rotator", "state")
    column_filters = ("state", "rotator", "started_at", "dry_run")
    column_formatters = {"state": _state, "secret_ref_id": _secret, "steps": _steps, "actions": _run_actions}
    column_default_sort = ("started_at", True)

    def _run_or_404(self) -> RotationRun:
        key = ascii_int(request.form.get("run"), high=SQL_ID_MAX)  # else no such row
        run = self.session.get(RotationRun, key) if key is not None else None
        if run is None:
            abort(404)
        return run

    @expose("/retry/", methods=("POST",))
    def retry_view(self):
        require_role("operator")
        run = self._run_or_404()
        perform(lambda: commands.retry_rotation(self.services, actor(), run.id), f"Run {run.id} retried.")
        return redirect(url_for(".index_view"))

    @expose("/acknowledge/", methods=("POST",))
    def acknowledge_view(self):
        require_role("operator")
        run = self._run_or_404()
        perform(lambda: commands.acknowledge_rotation(self.services, actor(), run.id), f"Run {run.id} acknowledged.")
        return redirect(url_for(".index_view"))
