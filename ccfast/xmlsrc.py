"""A tiny XML tree with line numbers, read the way FreeSWITCH reads configuration files.

``xml.etree`` drops line numbers; config errors must name file and line, so this builds a small
tree with expat directly. Tag and attribute names are case-sensitive (as in FreeSWITCH's ezxml);
callers compare param *values* case-insensitively where mod_callcenter does.
"""

from __future__ import annotations

import dataclasses
import glob
import re
from pathlib import Path
from xml.parsers import expat


class XmlError(Exception):
    """Unparsable XML. ``str()`` is ``file:line:col: reason``."""

    def __init__(self, file: str, line: int, col: int, reason: str):
        super().__init__(f"{file}:{line}:{col}: {reason}")
        self.file, self.line, self.col, self.reason = file, line, col, reason


@dataclasses.dataclass(eq=False)
class Node:
    tag: str
    attrs: dict[str, str]
    line: int
    file: str
    children: list["Node"] = dataclasses.field(default_factory=list)

    def child(self, tag: str) -> "Node | None":
        """First child with this tag (``switch_xml_child``)."""
        for node in self.children:
            if node.tag == tag:
                return node
        return None

    def all(self, tag: str) -> list["Node"]:
        return [node for node in self.children if node.tag == tag]

    def attr(self, name: str) -> str | None:
        return self.attrs.get(name)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def walk(self):
        yield self
        for node in self.children:
            yield from node.walk()


_COMMENT = re.compile(rb"<!--(.*?)-->", re.S)
_BARE_AMP = re.compile(rb"&(?!#?[A-Za-z0-9]+;)")


def _fix_comment(match: re.Match) -> bytes:
    body = match.group(1).replace(b"--", b"- ")
    if body.endswith(b"-"):
        body = body[:-1] + b" "
    return b"<!--" + body + b"-->"


def tolerate(data: bytes) -> bytes:
    """FreeSWITCH's parser accepts two things XML forbids and real files contain: ``--`` inside
    comments (``<!-- run with --foo -->``) and a bare ``&``. Fix them in place; line numbers stay."""
    data = _COMMENT.sub(_fix_comment, data)
    return _BARE_AMP.sub(b"&amp;", data)


def parse_text(text: str | bytes, file: str = "<string>") -> Node:
    """Parse a document; raises XmlError with the position of the first error."""
    if isinstance(text, str):
        text = text.encode("utf-8")
        if text.startswith(b"<?xml"):  # the text is UTF-8 now, whatever the declaration said
            text = re.sub(rb"^<\?xml[^>]*\?>", b'<?xml version="1.0" encoding="UTF-8"?>', text)
    text = tolerate(text)
    parser = expat.ParserCreate()
    stack: list[Node] = []
    roots: list[Node] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = Node(tag, dict(attrs), parser.CurrentLineNumber, file)
        if stack:
            stack[-1].children.append(node)
        else:
            roots.append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise XmlError(file, exc.lineno, exc.offset + 1, expat.ErrorString(exc.code)) from None
    return roots[0]


def parse_file(path: str | Path, _depth: int = 0) -> Node:
    """Parse a file and splice in ``<X-PRE-PROCESS cmd="include" data="glob"/>`` files
    (relative paths are taken from the including file's directory; an included file's
    ``<include>`` wrapper is dropped, as FreeSWITCH does)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XmlError(str(path), 0, 0, f"cannot read: {exc.strerror or exc}") from None
    root = parse_text(data, str(path))
    _splice_includes(root, path.parent, _depth)
    return root


def _splice_includes(node: Node, base: Path, depth: int) -> None:
    spliced: list[Node] = []
    for child in node.children:
        if child.tag == "X-PRE-PROCESS" and (child.attr("cmd") or "").lower() == "include":
            if depth > 20:
                raise XmlError(child.file, child.line, 0, "includes nested too deeply")
            pattern = child.attr("data") or ""
            full = pattern if pattern.startswith("/") else str(base / pattern)
            matches = sorted(glob.glob(full))
            if not matches and not glob.has_magic(full):
                raise XmlError(child.file, child.line, 0, f"included file {full} cannot be read")
            for name in matches:
                sub = parse_file(name, depth + 1)
                spliced.extend(sub.children if sub.tag == "include" else [sub])
            continue
        _splice_includes(child, base, depth)
        spliced.append(child)
    node.children = spliced


_VAR = re.compile(r"\$\$\{([^}]*)\}")


def preprocess_vars(root: Node) -> dict[str, str]:
    """Variables set by ``<X-PRE-PROCESS cmd="set" data="name=value"/>`` anywhere, in order."""
    found: dict[str, str] = {}
    for node in root.walk():
        if node.tag == "X-PRE-PROCESS" and (node.attr("cmd") or "").lower() == "set":
            name, sep, value = (node.attr("data") or "").partition("=")
            if sep:
                found[name.strip()] = _VAR.sub(lambda m: found.get(m.group(1), m.group(0)), value)
    return found


def unexpanded(value: str) -> list[str]:
    """Names of ``$${name}`` references still in ``value``."""
    return _VAR.findall(value)


def expand(value: str, variables: dict[str, str]) -> str:
    """Replace ``$${name}`` by its value where defined; leave the others as written."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
