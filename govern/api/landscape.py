"""Management API for the landscape: read systems, credentials, named credentials, integration users and
permission sets; apply a governance.yaml document.

Views are a permission check and one service call. Lists are paged with `?limit=&cursor=` (the cursor
is opaque; pass back `next_cursor`). Secret values are never returned, only their metadata.
"""
from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from govern.api.auth import require_admin
from govern.api.spec import INVALID_PARAMETER, api, openapi_extra, query_int, responses, validated_query
from govern.errors import BadRequest, GovernError, NotFound
from govern.landscape import apply_document
from govern.store.db import session_scope
from govern.store.landscape_query import MAX_LIMIT, page

bp = Blueprint("landscape", __name__, url_prefix="/api/v1")

RESOURCES = {"systems": "system", "credentials": "credential", "named-credentials": "named_credential",
             "integration-users": "integration_user", "permission-sets": "permission_set"}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _flag(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, bool):
        return value
    raise PydanticCustomError(INVALID_PARAMETER, "must be true or false")


Flag = Annotated[bool, BeforeValidator(_flag)]


class UnsupportedMediaType(GovernError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class LandscapeItem(BaseModel):
    """A landscape object as the API shows it: its settings, never a secret value (only its metadata)."""

    model_config = ConfigDict(extra="allow")


class LandscapePage(BaseModel):
    items: list[LandscapeItem]
    next_cursor: str | None = Field(description="pass back as ?cursor= for the next page; null on the last")


class PageQuery(BaseModel):
    limit: query_int(1, MAX_LIMIT) = 100  # type: ignore[valid-type]
    cursor: str | None = Field(None, description="next_cursor of the previous page")


class Change(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str
    id: str
    action: str


class Plan(BaseModel):
    """What apply did (or, with dry_run, would do)."""

    model_config = ConfigDict(extra="allow")
    dry_run: bool
    prune: bool
    applied: bool
    counts: dict[str, Any] = {}
    warnings: list[dict[str, Any]] = []
    revocations: list[str] = Field([], description="upstream token revocations queued for the worker (RFC 7009)")
    changes: list[Change]
    unchanged: dict[str, list[str]] = {}
    summary: str = ""


class ApplyQuery(BaseModel):
    dry_run: Flag = Field(False, description="plan only")
    prune: Flag = Field(False, description="delete what the document no longer lists")
    reactivate: list[str] = Field(default_factory=list, max_length=1000,
                                  description="retired (offboarded) integration users the document may bring back; "
                                              "without it, such a document is refused (422)")


def _sessions():
    return current_app.extensions["govern"].sessions


def _encode(cursor: str | None) -> str | None:
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=") if cursor else None


def _decode(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("cursor is not valid; pass back next_cursor unchanged") from None


def _list(kind: str):
    query = validated_query()
    with session_scope(_sessions()) as session:
        items, next_after = page(session, kind, limit=query.limit, after=_decode(query.cursor))
    return jsonify(items=items, next_cursor=_encode(next_after))


def _get(kind: str, ext_id: str):
    with session_scope(_sessions()) as session:
        items, _ = page(session, kind, limit=1, only=ext_id)
    if not items:
        raise NotFound(f"no {kind.replace('_', ' ')} {ext_id!r}")
    return jsonify(items[0])


def _register_reads() -> None:
    for resource, kind in RESOURCES.items():
        words, name = resource.replace("-", " "), "".join(part.title() for part in kind.split("_"))

        def list_view(kind=kind):
            return _list(kind)

        def get_view(ext_id: str, kind=kind):
            return _get(kind, ext_id)

        list_view.__doc__ = f"List {words} (paged)"
        get_view.__doc__ = f"One {kind.replace('_', ' ')} by external id"
        list_view.__name__, get_view.__name__ = f"list_{kind}", f"get_{kind}"
        listed = api.validate(query=PageQuery, resp=responses(200, LandscapePage, 400),
                              operation_id=f"list{name}s")(list_view)
        got = api.validate(resp=responses(200, LandscapeItem, 404), operation_id=f"get{name}",
                           path_parameter_descriptions={"ext_id": "external id"})(get_view)
        bp.add_url_rule(f"/{resource}", f"list_{kind}", require_admin("auditor")(listed), methods=["GET"])
        bp.add_url_rule(f"/{resource}/<ext_id>", f"get_{kind}", require_admin("auditor")(got), methods=["GET"])


_register_reads()


@bp.post("/apply")
@require_admin("admin")
@api.validate(query=ApplyQuery, resp=responses(200, Plan, 409, 413, 415, 422,
                                               description="The plan (applied unless dry_run)"),
              operation_id="applyLandscape")
@openapi_extra(requestBody={"required": True, "content": {t: {"schema": {"type": "string"}} for t in YAML_TYPES}})
def apply():
    """Apply a governance.yaml document (config as code); answers the plan

    The body is the document as application/yaml; 422 lists every error in it at once."""
    if request.mimetype not in YAML_TYPES:
        raise UnsupportedMediaType("send the governance.yaml document as application/yaml")
    query = validated_query()
    dry_run, prune = query.dry_run, query.prune
    text = request.get_data(as_text=True)
    plan = apply_document(_sessions(), text, "request", dry_run=dry_run, prune=prune, actor=g.admin_user,
                          reactivate=frozenset(query.reactivate),
                          correlation_id=getattr(g, "correlation_id", None),
                          production=current_app.extensions["govern"].settings.production)
    return jsonify(plan.to_dict())
