"""rego-cpp's parsed form of a module, read from the s-expressions its passes write.

regopy (the Python binding of rego-cpp) hands out no syntax tree, but the interpreter in debug
mode writes the tree of every compiler pass as a Trieste s-expression; the module's last reader
pass ("structure") is the complete parse of the module: package, imports, every rule with its
head and body, every call, every literal, each node with the byte offset and length it covers in
the source. The same notation carries the parser's errors. This module reads that notation.

The notation, as rego-cpp 1.5 prints it: `(kind` then optionally a location and/or a text, then
the children, then `)`. A location is `|offset|length`, preceded by `n:source` when the node comes
from another source than its parent; a token's text follows its location as `:text` (exactly
`length` bytes); a node without a location carries its text as `n:text`. `{…}` is a symbol table.
Texts are length-prefixed, so none of their bytes (quotes, parentheses, newlines) is ever parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Node:
    kind: str
    offset: int | None = None
    length: int | None = None
    text: str | None = None
    source: str | None = None
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first, in source order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def first(self, kind: str) -> Node | None:
        return next((child for child in self.children if child.kind == kind), None)

    def only(self, *kinds: str) -> Node | None:
        """The node reached through single children of the given kinds, in order."""
        node: Node | None = self
        for kind in kinds:
            node = node.first(kind) if node is not None else None
        return node


class NotationError(ValueError):
    """The dump does not read as the notation above (a rego-cpp version that prints differently)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def peek(self) -> int:
        return self.data[self.at] if self.at < len(self.data) else -1

    def skip_space(self) -> None:
        while self.at < len(self.data) and self.data[self.at] in b" \t\r\n":
            self.at += 1

    def number(self) -> int:
        start = self.at
        while self.at < len(self.data) and 48 <= self.data[self.at] <= 57:
            self.at += 1
        if start == self.at:
            raise NotationError(f"a number was expected at byte {start}")
        return int(self.data[start : self.at])

    def take(self, size: int) -> str:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk.decode("utf-8", "replace")

    def word(self) -> str:
        start = self.at
        while self.at < len(self.data) and self.data[self.at] not in b" \t\r\n(){}":
            self.at += 1
        return self.data[start : self.at].decode("utf-8", "replace")

    def expect(self, char: bytes) -> None:
        if self.data[self.at : self.at + 1] != char:
            raise NotationError(f"{char!r} was expected at byte {self.at}")
        self.at += 1


def _location(reader: _Reader, node: Node) -> None:
    """`[n:source]|offset|length[:text]` or `n:text`, whichever follows the kind."""
    if 48 <= reader.peek() <= 57:
        size = reader.number()
        reader.expect(b":")
        value = reader.take(size)
        if reader.peek() != ord("|"):
            node.text = value
            return
        node.source = value
    if reader.peek() == ord("|"):
        reader.expect(b"|")
        node.offset = reader.number()
        reader.expect(b"|")
        node.length = reader.number()
        if reader.peek() == ord(":"):
            reader.expect(b":")
            node.text = reader.take(node.length)


def _symbols(reader: _Reader) -> None:
    """A symbol table: skipped (the rules read the tree, not the binder's tables)."""
    reader.expect(b"{")
    while True:
        reader.skip_space()
        char = reader.peek()
        if char == ord("}"):
            reader.at += 1
            return
        if char == -1:
            raise NotationError("a symbol table is not closed")
        if char == ord("("):
            _node(reader)
        elif char == ord("{"):
            _symbols(reader)
        else:
            reader.at += 1


def _node(reader: _Reader) -> Node:
    reader.expect(b"(")
    node = Node(kind=reader.word())
    if reader.peek() == ord(" "):
        reader.at += 1
        _location(reader, node)
    while True:
        reader.skip_space()
        char = reader.peek()
        if char == ord(")"):
            reader.at += 1
            return node
        if char == ord("("):
            node.children.append(_node(reader))
        elif char == ord("{"):
            _symbols(reader)
        elif char == -1:
            raise NotationError(f"node {node.kind} is not closed")
        else:
            raise NotationError(f"unexpected byte {chr(char)!r} at {reader.at}")


def read_tree(dump: bytes) -> Node:
    """The first node of a dump (pass files start with the pass's name lines, errors do not)."""
    start = dump.find(b"(")
    if start < 0:
        raise NotationError("the dump holds no node")
    reader = _Reader(dump)
    reader.at = start
    return _node(reader)


def line_and_column(source: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a byte offset into the module's source."""
    before = source[: max(0, min(offset, len(source)))]
    line_start = before.rfind(b"\n") + 1
    return before.count(b"\n") + 1, len(before[line_start:].decode("utf-8", "replace")) + 1
