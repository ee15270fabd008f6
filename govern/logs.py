"""Structured JSON logging with correlation ids and redaction (seed practice 12).

Every line carries the correlation id of the request or job that wrote it. Values that look like
secrets are redacted before they are written, as a last line of defence: code must never log a
secret in the first place.
"""
from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import time
import traceback
import uuid
from contextlib import contextmanager
from typing import Any
from collections.abc import Iterator

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
# Never mutated in place: correlation() sets a new dict, so the shared default stays empty.
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})  # noqa: B039

CORRELATION_HEADER = "X-Correlation-ID"
_VALID_CORRELATION = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_SECRET_KEYS = re.compile(r"(secret|password|passwd|token|authorization|api[_-]?key|private[_-]?key|assertion|cookie)", re.I)
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)((?:client_secret|refresh_token|access_token|password|api_key|secret)=)[^&\s\"']+"),
]
# Every pattern above needs one of these to match, so text without any of them is returned as it is:
# most log values (paths, names, outcomes) never pay for the four substitutions.
_SUSPECT = re.compile(r"(?i)bearer|basic|eyJ|-----BEGIN|=")
REDACTED = "[REDACTED]"
# Terminal colour codes (werkzeug colours its request lines): never inside a JSON log value.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(value: str | None) -> str:
    """Take a caller's X-Correlation-ID if it is well formed, or make a new one."""
    if value and _VALID_CORRELATION.match(value):
        return value
    return new_correlation_id()


def current_correlation_id() -> str | None:
    return _correlation_id.get()


@contextmanager
def correlation(cid: str | None = None, **context: Any) -> Iterator[str]:
    """Bind a correlation id (and extra fields) to every log line written inside the block."""
    cid = cid or new_correlation_id()
    token = _correlation_id.set(cid)
    ctx_token = _context.set({**_context.get(), **context})
    try:
        yield cid
    finally:
        _correlation_id.reset(token)
        _context.reset(ctx_token)


def bind_correlation_id(cid: str) -> contextvars.Token:
    return _correlation_id.set(cid)


# Texts already seen without anything suspect (names, paths, outcomes: most of every line), so that a repeat
# costs a dict lookup instead of the search. Only short texts, and never one that matched: such a text is
# written as it is anyway. Bounded: cleared when full.
_CLEAN: dict[str, None] = {}
_CLEAN_MAX = 4096
_CLEAN_LEN = 200


def redact_text(text: str) -> str:
    if text in _CLEAN:
        return text
    if not _SUSPECT.search(text):
        if len(text) <= _CLEAN_LEN:
            if len(_CLEAN) >= _CLEAN_MAX:
                _CLEAN.clear()
            _CLEAN[text] = None
        return text
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED if m.group(1).endswith("=") else REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEYS.search(key)) and not key.endswith(("_id", "_ref", "_at", "_version", "_count"))


def redact(value: Any, key: str | None = None) -> Any:
    if key is not None and _secret_key(key):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, str):  # the common case first
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_ENCODER = json.JSONEncoder(default=str)  # json.dumps(..., default=str) without building an encoder per line


class JsonFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the formatted second last seen (one strftime per second, not per line)

    def _timestamp(self, record: logging.LogRecord) -> str:
        whole = int(record.created)
        second, text = self._second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(_ANSI.sub("", record.getMessage())),
            "correlation_id": _correlation_id.get(),
        }
        context = _context.get()
        if context:
            entry.update(redact(context))
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value, key)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            if getattr(record, "_with_traceback", False):
                # Only for a 500 (a bug): its message and traceback, redacted like every other value, so that
                # an operator can find the cause from the log alone. Never sent to the caller.
                entry["exc_message"] = redact_text(_ANSI.sub("", str(record.exc_info[1])))[:2000]
                entry["traceback"] = redact_text("".join(traceback.format_exception(*record.exc_info)))[-8000:]
        return _ENCODER.encode(entry)


def configure_logging(level: str = "INFO", stream=None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.set_name("govern-json")
    for existing in list(root.handlers):
        if existing.get_name() == "govern-json":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level.upper()), logging.INFO)
                                          if isinstance(logging.getLevelName(level.upper()), int) else logging.INFO)
