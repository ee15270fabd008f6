"""Load YAML into plain data and remember where every node was written.

PyYAML's composer gives nodes with start marks; we walk them ourselves so that each value's path
(a tuple of keys and list indexes, e.g. ``("integration_users", 3, "ip_ranges", 0)``) maps to its
1-based (line, column). Validation errors then point at `file:line:col`. Duplicate mapping keys, which
PyYAML silently overwrites, are errors here (YAML 1.2 section 3.2.1.1: keys are unique).

The composed node graph is measured before it is turned into data (issue #14): aliases make it a DAG whose
expansion can grow exponentially ("billion laughs", also through `<<` merge keys) or a cycle (`&a [*a]`).
The limits are on the document's size in bytes, its alias references, its nodes counted as expanded, and its
nesting depth; each refusal names the limit (DocumentTooLarge, DocumentTooComplex).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from govern.errors import DocumentTooComplex, DocumentTooLarge, ValidationFailed

try:  # the libyaml parser is several times faster on large landscapes
    _Base = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Base = yaml.SafeLoader

_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"

# The 100x-volume landscape of bench/apply.py (10,000 users) is 4.9 MB and 442,511 nodes: these leave room.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_NODES = 4_000_000  # counted as expanded: a node reached through n aliases counts n + 1 times
MAX_ALIASES = 100_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_DOCUMENT_BYTES
    max_nodes: int = MAX_NODES
    max_aliases: int = MAX_ALIASES
    max_depth: int = MAX_DEPTH


DEFAULT_LIMITS = Limits()


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader with a memoised tag resolver.

    Even with libyaml, PyYAML resolves every node's tag in Python (regexes per plain scalar); on a
    landscape of 10,000 users that is most of the parse time. Plain scalars resolve by value alone
    (no path resolvers are registered), so the result is cached per document.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._tags: dict[str, str] = {}

    def descend_resolver(self, current_node, current_index):
        pass

    def ascend_resolver(self):
        pass

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode:
            if not implicit[0]:
                return _STR
            tag = self._tags.get(value)
            if tag is None:
                tag = self._tags[value] = super().resolve(kind, value, implicit)
            return tag
        return _SEQ if kind is yaml.SequenceNode else _MAP

Path = tuple[Any, ...]


@dataclass
class Located:
    """A parsed document: plain data, its node tree (for positions), and the errors found while loading.

    Positions are looked up in the node tree only when an error needs one, so that a large valid
    landscape pays nothing for them.
    """

    data: Any
    filename: str
    root: Any = None  # the composed yaml.Node
    errors: list[dict[str, Any]] = field(default_factory=list)

    def where(self, path: Path) -> tuple[int, int]:
        """1-based (line, column) of `path`, or of its nearest ancestor written in the file.

        A mapping entry is located at its key: that is where a reader looks for an unknown key or a bad value.
        """
        node = self.root
        if node is None:
            return (1, 1)
        mark = node.start_mark
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        mark, node = key_node.start_mark, value_node
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return (mark.line + 1, mark.column + 1)

    def location(self, path: Path) -> str:
        line, col = self.where(path)
        return f"{self.filename}:{line}:{col}"

    def error(self, path: Path, message: str) -> None:
        self.errors.append(make_error(self, path, message))


def format_path(path: Path) -> str:
    """``("integration_users", 3, "ip_ranges", 0)`` -> ``integration_users[3].ip_ranges[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def make_error(doc: Located, path: Path, message: str) -> dict[str, Any]:
    line, col = doc.where(path)
    return {"location": f"{doc.filename}:{line}:{col}", "file": doc.filename, "line": line, "column": col,
            "path": format_path(path), "message": message}


def check_size(text: str | bytes, filename: str = "<input>", limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse a document larger than `limits.max_bytes` (measured in UTF-8 bytes) before parsing it."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise DocumentTooLarge(f"{filename}: the document is {size} bytes; at most {limits.max_bytes} are accepted")


def load(text: str, filename: str = "<input>", limits: Limits = DEFAULT_LIMITS) -> Located:
    """Parse one YAML document. A syntax error raises ValidationFailed with its `file:line:col`; a document
    beyond `limits` raises DocumentTooLarge or DocumentTooComplex, before it is expanded."""
    if len(text) > limits.max_bytes // 4:  # a str of this many characters may hold 4 bytes each
        check_size(text, filename, limits)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValidationFailed([{"location": f"{filename}:{line}:{col}", "file": filename, "line": line,
                                 "column": col, "path": "", "message": f"YAML syntax error: {problem}"}]) from None
    except yaml.YAMLError:
        raise ValidationFailed([{"location": f"{filename}:1:1", "file": filename, "line": 1, "column": 1,
                                 "path": "", "message": "YAML syntax error"}]) from None
    finally:
        loader.dispose()
    doc = Located(data=None, filename=filename, root=node)
    if node is None:
        doc.data = {}
        return doc
    _measure(node, filename, limits)
    constructor = yaml.SafeLoader("")  # only its scalar constructors are used
    try:
        doc.data = _walk(node, [], doc, constructor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ValidationFailed([{"location": f"{filename}:{line}:{col}", "file": filename, "line": line,
                                 "column": col, "path": "", "message": f"YAML error: {exc.problem}"}]) from None
    return doc


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def _measure(root: yaml.Node, filename: str, limits: Limits) -> None:
    """Walk the node graph once (each distinct node once) and refuse it if expanding it would exceed `limits`.

    A node met again after it was measured is an alias reference; a node met again while it is being
    measured is its own ancestor (a recursive alias). Iterative, so depth costs no Python stack.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]

    def refuse(message: str, node: yaml.Node):
        mark = node.start_mark
        raise DocumentTooComplex(f"{filename}:{mark.line + 1}:{mark.column + 1}: {message}")

    while stack:
        node, depth, leaving = stack.pop()
        key = id(node)
        if leaving:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > limits.max_nodes:
                refuse(f"expanding its aliases gives more than {limits.max_nodes} nodes", node)
            sizes[key] = size
            continue
        if key in sizes:
            aliases += 1
            if aliases > limits.max_aliases:
                refuse(f"more than {limits.max_aliases} alias references", node)
            continue
        if key in open_nodes:
            refuse("an alias refers to a node that contains it (a recursive alias)", node)
        if depth > limits.max_depth:
            refuse(f"nested deeper than {limits.max_depth} levels", node)
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))


def _walk(node: yaml.Node, path: list, doc: Located, constructor: yaml.SafeLoader) -> Any:
    """Plain data from nodes; `path` is a stack, copied only when an error is recorded."""
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == _STR else constructor.construct_object(key_node, deep=True)
            if isinstance(key, bool):
                key = str(key).lower()  # YAML 1.1 reads `on`/`yes` as booleans
            if not isinstance(key, (str, int, float)):
                doc.error(tuple(path), "mapping keys must be plain scalars")
                continue
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                doc.errors.append({"location": f"{doc.filename}:{line}:{col}", "file": doc.filename, "line": line,
                                   "column": col, "path": format_path((*path, key)), "message": f"duplicate key {key!r}"})
                continue
            path.append(key)
            out[key] = _walk(value_node, path, doc, constructor)
            path.pop()
        return out
    if isinstance(node, yaml.SequenceNode):
        out_list = []
        for i, item in enumerate(node.value):
            path.append(i)
            out_list.append(_walk(item, path, doc, constructor))
            path.pop()
        return out_list
    if node.tag == _STR:  # most scalars; skip construct_object's bookkeeping
        return node.value
    return constructor.construct_object(node, deep=True)
