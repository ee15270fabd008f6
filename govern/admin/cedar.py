"""A small Cedar tokenizer for the policies page: the text split into its policies, and each policy's text as
HTML with a class per token kind (keywords, strings, comments, annotations, numbers, operators). It runs on
the server, so the page needs no script (the console's CSP forbids inline script and outside origins)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

KEYWORDS = {"permit", "forbid", "when", "unless", "principal", "action", "resource", "context", "in", "has", "like",
            "is", "if", "then", "else", "true", "false"}

_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"?)
  | (?P<annotation>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\b\d+\b)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>::|==|!=|<=|>=|&&|\|\||[-+*<>!.,;:(){}\[\]])
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) for every token; the texts joined give `text` back."""
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        value = m.group(0)
        if kind == "word":
            kind = "keyword" if value in KEYWORDS else "name"
        out.append((kind, value))
    return out


def highlight(text: str) -> Markup:
    parts = []
    for kind, value in tokens(text):
        if kind in ("space", "name", "other"):
            parts.append(str(escape(value)))
        else:
            parts.append(f'<span class="gv-cedar-{kind}">{escape(value)}</span>')
    return Markup("".join(parts))  # noqa: S704 - every token is escaped; the classes are constants


@dataclass
class PolicyText:
    policy_id: str | None  # its @id annotation
    effect: str | None  # permit | forbid
    text: str  # the statement with the comments just above it


_ID = re.compile(r'@id\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


def split_policies(text: str) -> list[PolicyText]:
    """Split a policy file into statements at each top-level `;` (outside strings, comments and brackets)."""
    out: list[PolicyText] = []
    current: list[str] = []
    depth = 0
    for kind, value in tokens(text):
        current.append(value)
        if kind == "op" and value in "({[":
            depth += 1
        elif kind == "op" and value in ")}]":
            depth = max(depth - 1, 0)
        elif kind == "op" and value == ";" and depth == 0:
            out.append(_policy("".join(current)))
            current = []
    rest = "".join(current).strip()
    if rest:
        out.append(_policy(rest))  # an unterminated statement (the validator reports it)
    return out


def _policy(chunk: str) -> PolicyText:
    chunk = chunk.strip("\n")
    found = _ID.search(chunk)
    effect = next((value for kind, value in tokens(chunk) if kind == "keyword" and value in ("permit", "forbid")), None)
    return PolicyText(found.group(1) if found else None, effect, chunk.strip())
