"""Positions: dfm's spans ↔ the Language Server Protocol's.

dfm counts 1-based lines and 1-based columns in characters (code points), and on line 1 it counts
after a byte-order mark (`ir.Span`, `dsl/parser.py`). LSP counts 0-based lines and 0-based columns in
the code units of the encoding agreed at `initialize`: UTF-16 unless the client offers UTF-8 or UTF-32.
Both split lines at ``\\n``, ``\\r\\n`` and a lone ``\\r`` (and nothing else: not at a form feed or
U+2028, which `str.splitlines` would take), so line numbers carry over and only columns need counting.
"""

from __future__ import annotations

import bisect
import re

from lsprotocol import types as lsp

from ...dsl import ir

_BREAK = re.compile(r"\r\n|\r|\n")
ENCODINGS = ("utf-16", "utf-8", "utf-32")


def units(text: str, encoding: str = "utf-16") -> int:
    """How many code units of `encoding` `text` takes (a lone surrogate counts as one character)."""
    if text.isascii() or encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _char_units(c: str, encoding: str) -> int:
    n = ord(c)
    if encoding == "utf-32":
        return 1
    if encoding == "utf-8":
        return 1 if n < 0x80 else 2 if n < 0x800 else 3 if n < 0x10000 else 4
    return 2 if n > 0xFFFF else 1


class LineIndex:
    """One text's line starts, for offset ↔ position conversion in a given encoding."""

    def __init__(self, text: str, encoding: str = "utf-16"):
        self.text = text
        self.encoding = encoding if encoding in ENCODINGS else "utf-16"
        self.starts = [0] + [m.end() for m in _BREAK.finditer(text)]
        self.bom = text.startswith(ir.BOM)

    @property
    def line_count(self) -> int:
        return len(self.starts)

    def line_end(self, line: int) -> int:
        """Offset of the end of line `line` (0-based), before its line break."""
        if line + 1 >= len(self.starts):
            return len(self.text)
        end = self.starts[line + 1]
        return end - 2 if self.text.startswith("\r\n", end - 2) else end - 1

    def line_text(self, line: int) -> str:
        return self.text[self.starts[line]:self.line_end(line)]

    # -- offsets (0-based characters into the text) ↔ LSP positions
    def position(self, offset: int) -> lsp.Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        offset = min(offset, self.line_end(line))  # never between a \r and its \n
        return lsp.Position(line, units(self.text[self.starts[line]:offset], self.encoding))

    def offset(self, position: lsp.Position) -> int:
        if position.line >= len(self.starts):
            return len(self.text)
        line = max(0, position.line)
        start, end = self.starts[line], self.line_end(line)
        segment = self.text[start:end]
        if segment.isascii() or self.encoding == "utf-32":
            return start + min(max(0, position.character), len(segment))
        count = 0
        for i, c in enumerate(segment):
            if count >= position.character:
                return start + i
            count += _char_units(c, self.encoding)
        return end

    def range(self, start: int, end: int) -> lsp.Range:
        return lsp.Range(self.position(start), self.position(max(start, end)))

    # -- dfm spans (1-based line and column, in characters) → LSP ranges
    def span_position(self, line: int, col: int) -> lsp.Position:
        if line < 1:
            return lsp.Position(0, 0)
        if line > len(self.starts):
            return self.position(len(self.text))
        i = line - 1
        start = self.starts[i] + (1 if i == 0 and self.bom else 0)
        offset = min(start + max(0, col - 1), self.line_end(i))
        return lsp.Position(i, units(self.text[self.starts[i]:offset], self.encoding))

    def span_range(self, span: ir.Span) -> lsp.Range:
        start = self.span_position(span.line, span.col)
        end = self.span_position(span.end_line, span.end_col)
        if (end.line, end.character) < (start.line, start.character):
            end = start
        return lsp.Range(start, end)
