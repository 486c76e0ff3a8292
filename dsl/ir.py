"""The scene IR: frozen dataclasses, each with the source span it was parsed from.

Spans never take part in equality (``field(compare=False)``), so a scene parsed from differently
spaced text compares equal: the formatter's round-trip tests rely on it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

BOM = "\ufeff"  # a UTF-8 byte-order mark some editors put first; the parser ignores it
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def source_lines(text: str) -> list[str]:
    """The lines that `Span.line` counts: split at ``\\n``, ``\\r\\n`` and a lone ``\\r`` (Python's universal
    newlines, which is how `dfm` reads a file), a leading byte-order mark left out. Unlike
    `str.splitlines`, form feeds, ``\\x1c``-``\\x1e``, ``\\x85`` and ``\\u2028`` do not end a line."""
    if text.startswith(BOM):
        text = text[1:]
    return _LINE_BREAK.split(text)


@dataclass(frozen=True, slots=True)
class Span:
    """A region of the source: 1-based line/column, 0-based character offsets (end exclusive)."""

    line: int
    col: int
    end_line: int
    end_col: int
    start: int
    end: int

    @staticmethod
    def point(line: int, col: int, offset: int) -> Span:
        return Span(line, col, line, col + 1, offset, offset + 1)


NO_SPAN = Span(0, 0, 0, 0, 0, 0)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


# ---- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    text: str  # as written: Deforum's number/expression distinction depends on it
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-", "+", "~"
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % ** & | == != < <= > >=
    left: Expr
    right: Expr
    span: Span = _span()


Expr = Number | Variable | Call | Unary | Binary
EXPR_NODES = (Number, Variable, Call, Unary, Binary)


# ---- statement values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class String:
    value: str  # escapes resolved
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Word:
    """A bare word that is not a valid expression name, e.g. ``2d``."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Time:
    """A point or length in time: frames (``10``), seconds (``4s``) or beats (``8b``)."""

    value: float
    unit: str  # "f", "s" or "b"; "x": a frame given by an expression (Deforum's quoted key `"max_f-2"`)
    text: str
    span: Span = _span()
    expr: Expr | None = None  # unit "x": the expression, evaluated by the compiler


@dataclass(frozen=True, slots=True)
class Key:
    """One keyframe: ``at:(value)`` and an optional curve for the segment that starts here."""

    at: Time
    value: Expr
    curve: str | None = None
    span: Span = _span()
    curve_span: Span = _span()
    value_text: str = field(default="", compare=False)  # source text inside the parentheses


@dataclass(frozen=True, slots=True)
class KeyList:
    keys: tuple[Key, ...]
    trailing_comma: bool = field(default=False, compare=False)
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PromptPart:
    """One sub-prompt of the native composable form: ``"apple" weight cos(t)``; no weight means 1."""

    text: String
    weight: Expr | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Composite:
    """Sub-prompts joined with ``and`` (A1111's ``AND``): ``"apple" weight cos(t) and "snow"``."""

    parts: tuple[PromptPart, ...]
    span: Span = _span()


Value = Number | Variable | Call | Unary | Binary | String | Size | Word | Time | KeyList | Composite


# ---- statements and the scene --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """``name value*`` or ``name keylist``; the compiler gives the name its meaning (the catalogue)."""

    name: str
    args: tuple[Value, ...]
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, slots=True)
class Comment:
    text: str  # including the leading '#'
    trailing: bool  # on the same line as code
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Scene:
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
    source: str = field(default="", compare=False, repr=False)
    path: str = field(default="<string>", compare=False)

    @property
    def version(self) -> Statement | None:
        for st in self.statements:
            if st.name == "dfm":
                return st
        return None


def respan(node, span: Span):
    """The same value with every span replaced (for a schedule reparsed from inside a string)."""
    if not dataclasses.is_dataclass(node):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        val = getattr(node, f.name)
        if f.name.endswith("span"):
            changes[f.name] = span
        elif isinstance(val, tuple):
            changes[f.name] = tuple(respan(x, span) for x in val)
        elif dataclasses.is_dataclass(val):
            changes[f.name] = respan(val, span)
    return dataclasses.replace(node, **changes)


def variables(node) -> set[str]:
    """The names of the variables an expression reads."""
    if isinstance(node, Variable):
        return {node.name}
    if dataclasses.is_dataclass(node):
        out: set[str] = set()
        for f in dataclasses.fields(node):
            val = getattr(node, f.name)
            for x in val if isinstance(val, tuple) else (val,):
                out |= variables(x)
        return out
    return set()
