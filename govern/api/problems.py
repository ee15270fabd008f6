"""Every HTTP error is application/problem+json (RFC 9457) with a stable code; never a stack trace."""
from __future__ import annotations

import json as stdjson
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g, request, json, make_response
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from flask.globals import request_ctx

from govern.errors import GovernError
from govern.admin.errors import render_error
from govern.store.db import unavailable

log = logging.getLogger("govern.http")
PROBLEM_JSON = "application/problem+json"


def problem_response(error: GovernError):
    body = error.to_problem(instance=request.path, correlation_id=getattr(g, "correlation_id", None))
    response = make_response(json.dumps(body), error.status)
    response.mimetype = PROBLEM_JSON
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def problem_parts(error: GovernError, path: str, correlation_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of the problem+json answer, for the WSGI edges in front of Flask."""
    body = stdjson.dumps(error.to_problem(instance=path, correlation_id=correlation_id), default=str).encode()
    return error.status, [("Content-Type", PROBLEM_JSON), *error.headers.items()], body


class _HttpProblem(GovernError):
    def __init__(self, exc: HTTPException):
        self.code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                     405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                     415: "unsupported_media_type", 429: "rate_limited"}.get(exc.code or 500, "http_error")
        self.status = exc.code or 500
        self.title = exc.name
        super().__init__(exc.description if exc.code and exc.code < 500 else exc.name)


def unexpected(exc: Exception, *, traceback: bool = True) -> GovernError:
    """The answer to an exception that no code path turned into a GovernError, logged on the server.

    The database failing to serve (down, out of connections, locked, a lost deadlock) is 503
    database_unavailable with Retry-After, logged as one line with the driver's reason: the client retries and
    the operator sees why. Anything else is a bug: 500, its traceback in the server log (redacted by
    govern.logs; `traceback=False` logs the exception's type only, where third-party text may quote request
    data), never in the answer, which carries only the correlation id to quote."""
    error = _database_outage(exc)
    if error is not None:
        return error
    if traceback:
        log.error("unhandled error", exc_info=exc, extra={"_with_traceback": True})
    else:
        log.error("unhandled error", extra={"exc_type": type(exc).__name__})
    return GovernError("an unexpected error occurred; quote the correlation id when reporting it")


@contextmanager
def database_outage_as_error() -> Iterator[None]:
    """Inside: govern's database failing to serve is raised as DatabaseUnavailable (a GovernError, logged as
    `unexpected` logs it), for a route that answers GovernErrors in its own format (/oauth/token: RFC 6749's
    `temporarily_unavailable`, never problem+json). Any other exception passes through unchanged."""
    try:
        yield
    except GovernError:
        raise
    except Exception as exc:
        error = _database_outage(exc)
        if error is None:
            raise
        raise error from None


def _database_outage(exc: Exception) -> GovernError | None:
    """DatabaseUnavailable for a database that failed to serve, logged as one line with the driver's reason;
    None for any other exception."""
    error = unavailable(exc)
    if error is not None:
        log.error("database unavailable", extra={"code": error.code, "reason": error.reason})
    return error


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GovernError)
    def _govern_error(error: GovernError):
        if error.status >= 500:
            # govern's own error text never quotes a secret (govern.errors); an operator needs it to act.
            log.error("request failed", extra={"code": error.code, "status": error.status, "detail": error.detail})
        if _console():
            return _console_page(error.status, error.title, error.detail if error.status < 500 else None)
        return problem_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code and 300 <= exc.code < 400:  # routing redirects (e.g. 308 to add a trailing slash)
            return exc
        allow = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            allow = {"Allow": ", ".join(sorted(exc.valid_methods))}  # RFC 9110 section 15.5.6
        if _console():
            page = _console_page(exc.code or 500, exc.name,
                                 exc.description if (exc.code or 500) in (401, 403) else None)
            if not isinstance(page, tuple):  # the Host could not be routed: a problem response already
                return page
            body, status = page
            return body, status, allow
        problem = _HttpProblem(exc)
        problem.headers.update(allow)
        return problem_response(problem)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        error = unexpected(exc)
        if _console():
            if error.status == 503:
                body, status = _console_page(503, error.title, error.detail)
                return body, status, error.headers
            return _console_page(500, "Internal error")
        return problem_response(error)


def _console() -> bool:
    """The web console (/admin) shows HTML error pages; everything else gets problem+json. A request whose
    Host could not be routed (e.g. an empty label) has no URL adapter, so a console page could not build its
    links: it gets problem+json too, rather than a second failure and a 500."""
    return (request.path == "/admin" or request.path.startswith("/admin/")) and request_ctx.url_adapter is not None


def _console_page(status: int, title: str, detail: str | None = None):
    return render_error(status, title, detail)
