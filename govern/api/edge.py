"""Request shape checks that hold for every Flask route, in one place (issue #14, "bounded input").

- `<int:...>` path parameters are ASCII digits and fit a BIGINT column: a larger id cannot name a row, so
  it answers 404 like any other unknown id; Unicode digits answer 400.
- Query integers go through `int_arg` (ASCII digits, a stated range; 400 `invalid_parameter` otherwise).
- A JSON body nested deeper than govern.bounds.MAX_JSON_DEPTH answers 400 `json_too_deep` before any view
  parses it (the proxy's own WSGI edge applies the same check).
- A Content-Length that is not a number of bytes answers 400 (werkzeug would read it as 0).
"""
from __future__ import annotations

import base64
import binascii

from flask import Flask, request
from werkzeug.exceptions import BadRequest as HttpBadRequest
from werkzeug.routing import IntegerConverter, ValidationError

from govern.bounds import MAX_JSON_DEPTH, SQL_BIGINT_MAX, ascii_int, json_depth_exceeds
from govern.errors import InvalidParameter, JsonTooDeep


class BoundedIntConverter(IntegerConverter):
    """werkzeug's `int` converter, limited to what a database id can be."""

    def to_python(self, value: str) -> int:
        if not value.isascii():
            raise HttpBadRequest("a path id is written with the digits 0-9")
        number = super().to_python(value)
        if number > SQL_BIGINT_MAX:
            raise ValidationError()  # no row has this id: the route does not match, 404
        return number


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """The query parameter `name` as an integer in [low, high] (ASCII digits only), or `default` if absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    value = ascii_int(raw, low=low, high=high)
    if value is None:
        raise InvalidParameter([{"location": f"query.{name}",
                                 "message": f"must be an integer from {low} to {high} (digits 0-9)"}])
    return value


def content_length(environ) -> int | None:
    """The request's Content-Length, None when absent; 400 when it is not a number of bytes (RFC 9110
    section 8.6: 1*DIGIT)."""
    raw = environ.get("CONTENT_LENGTH")
    if raw is None or raw == "":
        return None
    value = ascii_int(raw.strip())
    if value is None:
        raise InvalidParameter([{"location": "header.Content-Length", "message": "must be a number of bytes"}])
    return value


def basic_credentials_readable(authorization: str | None) -> bool:
    """False for an `Authorization: Basic` header whose credentials are not base64 of UTF-8 text (RFC 7617
    section 2); True for anything else (other schemes are judged by whoever reads them)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return True
    value = value.strip()
    if not value or not value.isascii():
        return False
    try:
        base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return True


def install(app: Flask) -> None:
    app.url_map.converters["int"] = BoundedIntConverter

    @app.before_request
    def _bounded_body():
        content_length(request.environ)
        if request.is_json and json_depth_exceeds(request.get_data(cache=True), MAX_JSON_DEPTH):
            raise JsonTooDeep(f"JSON may nest at most {MAX_JSON_DEPTH} arrays or objects")
