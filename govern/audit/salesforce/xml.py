"""A small, safe XML reader with line numbers, on the stdlib's expat.

Salesforce metadata never needs a DTD, so any DOCTYPE or entity declaration is refused outright: this
closes entity expansion ("billion laughs") and external entities (XXE) without defusedxml. Each element
keeps the line it started on, for SARIF locations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat


class MetadataXmlError(ValueError):
    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(message)


@dataclass
class Node:
    tag: str
    line: int
    text: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    def child_text(self, tag: str, default: str | None = None) -> str | None:
        for c in self.children:
            if c.tag == tag:
                return c.text
        return default

    def find(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def all(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def flag(self, tag: str) -> bool:
        return (self.child_text(tag) or "").strip().lower() == "true"


def parse(data: bytes) -> Node:
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []
    texts: list[list[str]] = []

    def refuse_doctype(*_args):
        raise MetadataXmlError("DOCTYPE declarations are not allowed in metadata", parser.CurrentLineNumber)

    def start(name, attrs):
        node = Node(name.rsplit("}", 1)[-1], parser.CurrentLineNumber, attrs={k.rsplit("}", 1)[-1]: v
                                                                              for k, v in attrs.items()})
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)
        texts.append([])

    def end(_name):
        node = stack.pop()
        node.text = "".join(texts.pop()).strip()

    def chars(data):
        if texts:
            texts[-1].append(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.ExternalEntityRefHandler = lambda *a: refuse_doctype()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise MetadataXmlError(f"malformed XML: {expat.ErrorString(exc.code)}", exc.lineno) from None
    if not root:
        raise MetadataXmlError("no root element", 1)
    return root[0]
