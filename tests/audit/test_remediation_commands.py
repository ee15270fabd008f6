"""Issue #19: remediation texts name only commands that exist. Every `govern ...` command that a rule's remediation
or rationale, or docs/audit.md, shows is resolved and parsed with the CLI's own click parser; prose that mentions
govern ("govern does not evaluate it") must not start with a command's name."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from govern.audit.engine import catalogue
from govern.cli import _register, cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
CODE = re.compile(r"`(govern [^`]+)`")
MENTION = re.compile(r"\bgovern ([a-z][a-z-]*)")


def _commands():
    _register()
    return cli


def _sample(param: click.Parameter, token: str) -> str:
    """A placeholder (NAME, FILE, RUN) becomes a value of the parameter's type, so the parse checks the shape."""
    if not re.fullmatch(r"[A-Z][A-Z_]*", token):
        return token
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, (click.types.IntParamType, click.IntRange)):
        return "1"
    return token.lower()


def parse(command: str) -> click.Context:
    """Resolve `govern a b ...` to its command and parse the rest as click would (no callbacks, no prompts)."""
    text = command.split("#", 1)[0].strip()
    # a synopsis: [optional] parts are kept, the first of a|b|c alternatives stands for all
    text = re.sub(r"[\[\]]", " ", text)
    text = re.sub(r"(\S+?)\|\S+", r"\1", text)
    words = shlex.split(text)
    assert words[0] == "govern", command
    cmd: click.Command = _commands()
    path, rest = ["govern"], words[1:]
    while isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
        cmd = cmd.commands[rest[0]]
        path.append(rest.pop(0))
    if isinstance(cmd, click.Group) and rest and not rest[0].startswith("-") and not getattr(cmd, "invoke_without_command", False):
        raise AssertionError(f"{command!r}: {' '.join(path)} has no command {rest[0]!r}")
    options = {name: p for p in cmd.params for name in getattr(p, "opts", [])}
    positionals = [p for p in cmd.params if isinstance(p, click.Argument)]
    args, given, i = [], [], 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("-"):
            param = options.get(token)
            assert param is not None, f"{command!r}: {' '.join(path)} has no option {token}"
            args.append(token)
            if not getattr(param, "is_flag", False) and i + 1 < len(rest):
                args.append(_sample(param, rest[i + 1]))
                given.append((param, args[-1]))
                i += 1
        else:
            param = positionals.pop(0) if positionals else None
            assert param is not None or isinstance(cmd, click.Group), f"{command!r}: unexpected argument {token!r}"
            args.append(_sample(param, token) if param is not None else token)
            if param is not None:
                given.append((param, args[-1]))
        i += 1
    # resilient parsing leaves out what is missing (a partial command in prose is fine) but also swallows bad
    # values, so each given value is converted by its parameter's own type
    ctx = cmd.make_context(" ".join(path), args, resilient_parsing=True)
    for param, value in given:
        param.type.convert(value, param, ctx)
    return ctx


def _rule_texts():
    for r in catalogue().values():
        yield r.id, f"{r.remediation}\n{r.rationale}"


def _doc_commands() -> list[str]:
    text = DOCS.read_text()
    out = [m.group(1) for m in CODE.finditer(text)]
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        out += [line.strip() for line in block.splitlines() if line.strip().startswith("govern ")]
    return out


def _prose(text: str) -> str:
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return CODE.sub(" ", text)


def test_rule_texts_and_docs_show_commands():
    shown = [c for _, t in _rule_texts() for c in CODE.findall(t)]
    assert len(shown) >= 6 and len(_doc_commands()) >= 15


@pytest.mark.parametrize("command", sorted({c for _, t in _rule_texts() for c in CODE.findall(t)} | set(_doc_commands())))
def test_every_command_shown_parses(command):
    parse(command)


def test_prose_never_names_a_command_outside_code():
    names = set(_commands().commands)
    for where, text in [*_rule_texts(), ("docs/audit.md", DOCS.read_text())]:
        for m in MENTION.finditer(_prose(text)):
            assert m.group(1) not in names, f"{where}: 'govern {m.group(1)}' outside `code`: write it as a command"


@pytest.mark.parametrize("wrong", ["govern rotate NAME --commit", "govern audit --recomend FILE",
                                   "govern import salesforce DIR --nmae X", "govern log show --outcome maybe",
                                   "govern audit report --format pdf"])
def test_the_check_can_fail(wrong):
    with pytest.raises((AssertionError, click.UsageError, click.BadParameter)):
        parse(wrong)
