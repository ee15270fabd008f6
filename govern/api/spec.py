"""govern's HTTP edge, described once: pydantic models validate each route and generate the OpenAPI document.

Each view in govern/api names its request models (`query=`, `json=`, `form=`) and its responses with
`api.validate(...)` (spectree, https://spectree.readthedocs.io). The same models then

- validate the request before the view runs: a failure is problem+json (RFC 9457) with today's stable codes,
  `validation_failed` (422) or, for a query integer that is not ASCII digits in range, `invalid_parameter`
  (400); each error names its location (`body.secret`, `query.limit`) and never quotes the input, which may
  be a secret;
- describe the route in `/api/v1/openapi.json` (govern/api/openapi.py finishes the document spectree builds
  from `app.url_map`);
- check what the view answers when the app is under test (`TESTING`): a response that does not fit its
  documented model is a 500 naming the drift, so the suite finds it; in production the check is skipped,
  so a drift never costs a caller an answer.
"""
from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any, Literal, NoReturn

from flask import current_app, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError
from spectree import Response, SpecTree
from spectree.plugins.base import Context
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import is_list_item

from govern.bounds import SQL_BIGINT_MAX, ascii_int
from govern.errors import GovernError, InvalidParameter, ValidationFailed

PROBLEM_JSON = "application/problem+json"
FORM = "application/x-www-form-urlencoded"
_REASONS = {400: "Bad request", 401: "Not authenticated", 403: "Not allowed", 404: "Not found", 409: "Conflict",
            413: "Payload too large", 415: "Unsupported media type", 422: "Validation failed",
            429: "Rate limited", 500: "Internal error", 502: "Upstream failed", 503: "Unavailable",
            504: "Upstream timed out"}
INVALID_PARAMETER = "invalid_parameter"  # the pydantic error type of a query integer that is not ASCII digits


class ProblemError(BaseModel):
    location: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as govern/api/problems.py renders every error (application/problem+json)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    code: str = Field(description="stable, machine-readable; see docs/api.md")
    detail: str | None = None
    instance: str | None = None
    correlation_id: str | None = None
    rule: str | None = Field(None, description="the deciding rule of an access_denied problem")
    errors: list[ProblemError] | None = Field(None, description="validation_failed: every error at once")


def query_int(low: int, high: int) -> Any:
    """A query integer written with ASCII digits 0-9 only, in [low, high] (govern.bounds.ascii_int): no sign,
    space, "_" or other digits, which Python's int() would take. Outside that, 400 `invalid_parameter`."""

    def parse(raw: Any) -> int:
        value = ascii_int(raw, low=low, high=high) if isinstance(raw, str) else None
        if value is None and isinstance(raw, int) and not isinstance(raw, bool) and low <= raw <= high:
            value = raw  # a default
        if value is None:
            raise PydanticCustomError(INVALID_PARAMETER, "must be an integer from {low} to {high} (digits 0-9)",
                                      {"low": low, "high": high})
        return value

    # parse checks the range; the schema states it (a Field(ge=, le=) behind a before-validator would not)
    return Annotated[int, BeforeValidator(parse), WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})]


def one_of(values) -> Any:
    """A query value from `values`; an empty one means the parameter is not given (422 otherwise)."""
    return Annotated[Literal[tuple(values)] | None, BeforeValidator(lambda raw: raw or None)]


Limit = query_int(1, 500)
Offset = query_int(0, SQL_BIGINT_MAX)


class Paged(BaseModel):
    limit: Limit = 50  # type: ignore[valid-type]  # built by query_int (as at the routes' own query models)
    offset: Offset = 0  # type: ignore[valid-type]


def _location(loc: tuple, where: str) -> str:
    return ".".join([where, *(str(part) for part in loc)]) if loc else where


def raise_validation(error: ValidationError, where: str) -> NoReturn:
    """The pydantic errors as govern's: location and message only (never the input: it may be a secret)."""
    errors = [{"location": _location(e["loc"], where), "message": e["msg"]} for e in error.errors(include_url=False)]
    if any(e["type"] == INVALID_PARAMETER for e in error.errors(include_url=False)):
        raise InvalidParameter([e for e, raw in zip(errors, error.errors(include_url=False), strict=True)
                                if raw["type"] == INVALID_PARAMETER])
    raise ValidationFailed(errors)


class GovernFlaskPlugin(FlaskPlugin):
    """spectree's Flask plugin with govern's request reading and error shape."""

    def request_validation(self, request, query, json, form, headers, cookies):
        has_data = request.method not in ("GET", "DELETE")
        parsed_query = parsed_json = parsed_form = None
        try:
            if query is not None:
                # a repeated parameter counts once (its first value), as request.args.get reads it, unless
                # the model takes a list
                args = {key: request.args.getlist(key) if is_list_item(key, query) else request.args.get(key)
                        for key in request.args}
                parsed_query = self.model_adapter.validate_obj(query, args)
        except ValidationError as error:
            raise_validation(error, "query")
        if json is not None and has_data and request.mimetype not in self.FORM_MIMETYPE:
            body = _json_body(request)
            try:
                parsed_json = self.model_adapter.validate_obj(json, body)
            except ValidationError as error:
                raise_validation(error, "body")
        if form is not None and has_data and request.mimetype in self.FORM_MIMETYPE:
            try:
                parsed_form = self.model_adapter.validate_obj(form, self.fill_form(request))
            except ValidationError as error:
                raise_validation(error, "form")
        request.context = Context(parsed_query, parsed_json, parsed_form, None, None)

    def validate_response(self, resp, resp_model, skip_validation, force_resp_serialize):
        response = current_app.make_response(resp)
        model = resp_model.find_model(response.status_code) if resp_model is not None else None
        if model is not None and not skip_validation and current_app.testing:
            try:
                self.model_adapter.validate_json(model, response.get_data())
            except ValidationError as error:
                drift = [f"{_location(e['loc'], 'response')}: {e['msg']}" for e in error.errors(include_url=False)]
                raise GovernError(f"{request.endpoint} answered {response.status_code} outside its documented "
                                  f"model {model.__name__}: {drift}") from None
        return response, None


def _json_body(req) -> Any:
    """The JSON body: {} when there is none; 422 when it is not JSON (werkzeug's `silent` would read it as
    absent)."""
    data = req.get_data(cache=True)
    if not data:
        return {}
    if not req.is_json:
        return {}  # not sent as JSON: the model's required fields answer for it
    try:
        return jsonlib.loads(data)
    except ValueError:
        raise ValidationFailed([{"location": "body", "message": "is not valid JSON"}]) from None


class Responses(Response):
    """spectree adds its own validation-error model to every route (`replace=False`); govern's routes list
    the statuses they answer themselves, so a 422 is documented only where a request can be invalid."""

    def add_model(self, code, model, replace=True, description=None):
        if replace:
            super().add_model(code, model, replace=replace, description=description)


def responses(ok: int = 200, model: Any = None, *problems: int, description: str | None = None) -> Response:
    """The documented answers of one operation: `ok` with `model` (a pydantic model, or None for a body that
    is not JSON) and each problem status as application/problem+json."""
    codes: dict[str, Any] = {f"HTTP_{ok}": (model, description) if description else model}
    for status in problems:
        codes[f"HTTP_{status}"] = (Problem, f"{_REASONS.get(status, 'Error')} (RFC 9457 problem details)")
    return Responses(**codes)


def openapi_extra(**fields: Any):
    """What a view's models cannot say (a YAML body, an optional body), merged into its operation."""

    def mark(view):
        view.openapi_extra = fields
        return view

    return mark


def validated_json() -> Any:
    """The view's request body, as its `json=` or `form=` model parsed it."""
    context = getattr(request, "context", None)
    return (context.json or context.form) if context is not None else None


def validated_query() -> Any:
    return request.context.query  # type: ignore[attr-defined]


api = SpecTree(
    backend=GovernFlaskPlugin, mode="strict", annotations=False, title="govern", version="1",
    description="Governs how integrations authenticate to the systems they connect.",
    naming_strategy=lambda model: model.__name__, nested_naming_strategy=lambda _parent, child: child,
    validation_error_model=Problem)
