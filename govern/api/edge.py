"""Request shape checks that hold for every Flask route, in one place (issue #14, "bounded input").

- `<int:...>` path parameters are ASCII digits and fit a row id (an INTEGER column): a larger id cannot name
  a row, so it answers 404 like any other unknown id; Unicode digits answer 400.
- Query integers are read by the routes' models with govern.api.spec.query_int (ASCII digits, a stated range;
  400 `invalid_parameter` otherwise).
- A JSON body nested deeper than govern.bounds.MAX_JSON_DEPTH answers 400 `json_too_deep` before any view
  parses it (the proxy's own WSGI edge applies the same check).
- A Content-Length that is not a number of bytes answers 400 (werkzeug would read it as 0).
- A NUL character in the path, a query parameter, a form field or a JSON string answers 400: no govern value
  holds one, and PostgreSQL text cannot (it would fail the query with a 500).
"""
from __future__ import annotations

import base64
import binascii

from flask import Flask, request
from werkzeug.exceptions import BadRequest as HttpBadRequest
from werkzeug.routing import IntegerConverter, ValidationError

from govern.bounds import MAX_JSON_DEPTH, SQL_ID_MAX, ascii_int, json_depth_exceeds, json_has_nul
from govern.errors import InvalidParameter, JsonTooDeep


class BoundedIntConverter(IntegerConverter):
    """werkzeug's `int` converter, limited to what a database id can be."""

    def to_python(self, value: str) -> int:
        if not value.isascii():
            raise HttpBadRequest("a path id is written with the digits 0-9")
        number = super().to_python(value)
        if number > SQL_ID_MAX:
            raise ValidationError()  # no row has this id: the route does not match, 404
        return number


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
    def _bounded_request():
        content_length(request.environ)
        nul = _nul_location()
        if request.is_json:
            body = request.get_data(cache=True)
            if json_depth_exceeds(body, MAX_JSON_DEPTH):
                raise JsonTooDeep(f"JSON may nest at most {MAX_JSON_DEPTH} arrays or objects")
            if nul is None and json_has_nul(body):
                nul = "body"
        if nul is not None:
            raise InvalidParameter([{"location": nul, "message": "must not contain a NUL character"}])


def _nul_location() -> str | None:
    if "\x00" in request.path:
        return "path"
    for key, value in request.args.items(multi=True):
        if "\x00" in key or "\x00" in value:
            return f"query.{key.replace(chr(0), '')}"
    # /oauth/token answers in RFC 6749's own format; a NUL there finds no client (govern.broker.oauth_server)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data") and \
            request.path != "/oauth/token":
        for key, value in request.form.items(multi=True):
            if "\x00" in key or "\x00" in value:
                return f"form.{key.replace(chr(0), '')}"
    return None
