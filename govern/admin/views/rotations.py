"""Rotation history (runs and their steps); schedules are on the Secrets view (SecretRef.schedule, next_due_at)."""
from __future__ import annotations

import json

from markupsafe import Markup, escape

from govern.admin.views.base import ReadOnlyView
from govern.store.tables import SecretRef

_STATE_BADGE = {"finished": "success", "failed": "danger", "parked": "danger", "cancelled": "secondary"}


def _state(view, context, model, name):
    return Markup(f'<span class="badge badge-{_STATE_BADGE.get(model.state, "info")}">{escape(model.state)}</span>')


def _secret(view, context, model, name):
    ref = view.session.get(SecretRef, model.secret_ref_id)
    return ref.external_id if ref else model.secret_ref_id


def _steps(view, context, model, name):
    # Steps hold step names, times and outcomes written by the rotation service, never values.
    return Markup(f"<pre class='mb-0'>{escape(json.dumps(model.steps or [], indent=2, default=str))}</pre>")


class RotationRunView(ReadOnlyView):
    column_list = ("started_at", "secret_ref_id", "rotator", "state", "dry_run", "attempts", "pending_version",
                   "next_attempt_at", "finished_at", "error")
    column_details_list = column_list + ("claimed_by", "claimed_until", "steps")
    column_labels = {"secret_ref_id": "Secret", "started_at": "Started (UTC)"}
    column_searchable_list = ("rotator", "state")
    column_filters = ("state", "rotator", "started_at", "dry_run")
    column_formatters = {"state": _state, "secret_ref_id": _secret, "steps": _steps}
    column_default_sort = ("started_at", True)
