"""Source spans of pieces of a string literal, so a diagnostic can point inside a prompt's text."""

from __future__ import annotations

from ..dsl import ir
from ..dsl.parser import unescape


def string_span(source: str, s: ir.String, start: int, end: int) -> ir.Span:
    """The source span of `s.value[start:end]`; the whole string where the source text does not map
    character by character (triple quotes, a statement an importer built)."""
    sp = s.span
    raw = source[sp.start:sp.end]
    if len(raw) < 2 or raw[0] not in "\"'" or raw[-1] != raw[0] or raw.startswith('"""') or "\n" in raw:
        return sp
    where = value_offsets(raw[1:-1], s.value)
    if where is None or not 0 <= start < end <= len(where):
        return sp
    a, b = sp.start + 1 + where[start][0], sp.start + 1 + where[end - 1][1]
    return ir.Span(sp.line, sp.col + a - sp.start, sp.line, sp.col + b - sp.start, a, b)


def value_offsets(body: str, value: str) -> list[tuple[int, int]] | None:
    """For each character of a string's value, its [start, end) in the source text between the quotes
    (an escape like `\\n` is two source characters for one); None if reading `body` does not give `value`."""
    if unescape(body) != value:
        return None
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            one = len(unescape(body[i:i + 2])) == 1  # an escape the parser resolves to one character
            out += [(i, i + 2)] if one else [(i, i + 1), (i + 1, i + 2)]
            i += 2
        else:
            out.append((i, i + 1))
            i += 1
    return out
