"""Source spans of pieces of a string literal, so a diagnostic can point inside a prompt's text."""

from __future__ import annotations

from functools import lru_cache

from ..dsl import ir
from ..dsl.parser import unescape

_IDENTITY = "identity"  # a string without escapes: value character k is source character k


def string_span(source: str, s: ir.String, start: int, end: int) -> ir.Span:
    """The source span of `s.value[start:end]`; the whole string where the source text does not map
    character by character (triple quotes, a statement an importer built)."""
    sp = s.span
    where = _mapping(source, s)
    if where is None or not 0 <= start < end <= len(s.value):
        return sp
    if where is _IDENTITY:
        a, b = sp.start + 1 + start, sp.start + 1 + end
    else:
        a, b = sp.start + 1 + where[start][0], sp.start + 1 + where[end - 1][1]
    return ir.Span(sp.line, sp.col + a - sp.start, sp.line, sp.col + b - sp.start, a, b)


# One mapping per string, not per finding: a prompt of 20,000 unclosed `(` has 20,000 DFM501 findings, and
# re-reading the string for each was quadratic (112 s). Keyed by the source and the String (hashes of both
# are cached by Python, and a hit compares them by identity first), so a lookup is O(1).
@lru_cache(maxsize=32)  # a scene's strings share one source; few are held at once (an LSP edits on)
def _mapping(source: str, s: ir.String) -> list[tuple[int, int]] | str | None:
    sp = s.span
    raw = source[sp.start:sp.end]
    if len(raw) < 2 or raw[0] not in "\"'" or raw[-1] != raw[0] or raw.startswith('"""') or "\n" in raw:
        return None
    body = raw[1:-1]
    if "\\" not in body:  # most prompts: no per-character list to keep
        return _IDENTITY if body == s.value else None
    return value_offsets(body, s.value)


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
