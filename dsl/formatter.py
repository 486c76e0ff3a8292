"""`dfm fmt`: the one canonical layout of a scene.

Statements keep their order and their comments; values are aligned in a column per paragraph
(statements not separated by a blank line); keyframes are written `0:(1), 10:(2)` and wrapped at
`WIDTH` columns with continuation lines under the first value; expressions get canonical spacing and
only the parentheses they need (number texts are kept verbatim: `1e-3` and `1.` mean something
different from `0.001` and `1` to Deforum's schedule rules). Formatting is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from . import ir
from .parser import parse, string_value

WIDTH = 100
COMMENT_COLUMN_LIMIT = 80  # beyond this, a trailing comment just follows its line
VERSION_STATEMENT = "dfm"  # `dfm 1` stands apart: never aligned with the settings below it

# binding strength; higher binds tighter
_PREC = {"cmp": 1, "|": 2, "&": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "unary": 6, "**": 7}
_CMP = {"==", "!=", "<", "<=", ">", ">="}


def _prec(e: ir.Expr) -> int:
    if isinstance(e, ir.Binary):
        return _PREC["cmp"] if e.op in _CMP else _PREC[e.op]
    if isinstance(e, ir.Unary):
        return _PREC["unary"]
    return 99


def format_expr(e: ir.Expr) -> str:
    """An expression in canonical form; also valid numexpr syntax for Deforum export."""
    if isinstance(e, ir.Number):
        return e.text
    if isinstance(e, ir.Variable):
        return e.name
    if isinstance(e, ir.Call):
        return f"{e.func}({', '.join(format_expr(a) for a in e.args)})"
    if isinstance(e, ir.Unary):
        inner = format_expr(e.operand)
        if _prec(e.operand) < _PREC["unary"]:
            inner = f"({inner})"
        return f"{e.op}{inner}"
    if isinstance(e, ir.Binary):
        p = _prec(e)
        left, right = format_expr(e.left), format_expr(e.right)
        if e.op == "**":  # right-associative
            if _prec(e.left) <= p:
                left = f"({left})"
            if _prec(e.right) < _PREC["unary"]:
                right = f"({right})"
            return f"{left}**{right}"
        # `(t*bpm/60) % 1` keeps its parentheses: a modulo of a product reads ambiguously without them
        mod_of_product = e.op == "%" and isinstance(e.left, ir.Binary) and e.left.op in ("*", "/")
        if _prec(e.left) < p or (p == _PREC["cmp"] and _prec(e.left) == p) or mod_of_product:
            left = f"({left})"
        if _prec(e.right) <= p:
            right = f"({right})"
        if p == _PREC["*"]:  # products written tight, sums spaced: 1 + 0.002*sin(2*pi*t/30)
            return f"{left}{e.op}{right}"
        return f"{left} {e.op} {right}"
    raise TypeError(f"not an expression: {e!r}")


_TRIPLE = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""', re.S)  # the grammar's STRING, triple-quoted


def format_string(s: str) -> str:
    """A string literal that reads back as `s`: triple-quoted when it holds a newline and that form reads
    back unchanged (the parser dedents a triple-quoted body and drops a newline at either end), else
    one line with escapes. A carriage return or NUL is always escaped: raw, a lone CR ends the line."""
    body = s.replace("\\", "\\\\").replace("\r", "\\r").replace("\0", "\\0")
    if "\n" in s:
        triple = '"""' + body.replace('"""', '\\"""') + '"""'
        if _TRIPLE.fullmatch(triple) and string_value(triple) == s:
            return triple
    return '"' + body.replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def format_key(k: ir.Key) -> str:
    text = f"{k.at.text}:({format_expr(k.value)})"
    return f"{text} {k.curve}" if k.curve else text


def format_value(v: ir.Value) -> str:
    if isinstance(v, ir.String):
        return format_string(v.value)
    if isinstance(v, ir.Size):
        return f"{v.width}x{v.height}"
    if isinstance(v, ir.Word):
        return v.text
    if isinstance(v, ir.Time):
        return v.text
    if isinstance(v, ir.KeyList):
        return ", ".join(format_key(k) for k in v.keys)
    if isinstance(v, ir.Composite):
        return " and ".join(format_prompt_part(p) for p in v.parts)
    return format_expr(v)


def format_prompt_part(p: ir.PromptPart) -> str:
    """`"apple" weight cos(t)`: the string, and the weight only when one was written."""
    text = format_string(p.text.value)
    return text if p.weight is None else f"{text} weight {format_expr(p.weight)}"


def format_statement(st: ir.Statement, name_width: int = 0, rename: Mapping[str, str] | None = None,
                     first_arg_width: int = 0) -> str:
    name = (rename or {}).get(st.name, st.name)
    head = name.ljust(name_width) + " " if st.args else name
    if len(st.args) >= 2 and first_arg_width:  # `prompt 0   "…"` under `prompt 100 "…"`
        first = format_value(st.args[0]).ljust(first_arg_width)
        return head + first + " " + " ".join(format_value(v) for v in st.args[1:])
    if len(st.args) == 1 and isinstance(st.args[0], ir.KeyList):
        keys = [format_key(k) for k in st.args[0].keys]
        lines, cur = [], head
        indent = " " * len(head)
        for i, key in enumerate(keys):
            piece = key + ("," if i < len(keys) - 1 else "")
            if cur.strip() and cur != head and len(cur) + 1 + len(piece) > WIDTH:
                lines.append(cur.rstrip())
                cur = indent
            cur += (piece if cur in (head, indent) else " " + piece)
        lines.append(cur.rstrip())
        return "\n".join(lines)
    return head + " ".join(format_value(v) for v in st.args)


def format_scene(scene: ir.Scene, rename: Mapping[str, str] | None = None) -> str:
    """Canonical text of a parsed scene (its comments are kept)."""
    source_lines = ir.source_lines(scene.source)  # the lines spans count, not str.splitlines'

    def blank_between(a: int, b: int) -> bool:  # any empty line strictly between lines a and b
        return any(not source_lines[i - 1].strip() for i in range(a + 1, b) if 0 < i <= len(source_lines))

    # items in source order: ("st", statement, trailing comments) or ("c", comment)
    trailing: dict[int, list[ir.Comment]] = {}
    leading_inside: dict[int, list[ir.Comment]] = {}
    items: list[tuple[int, int, str, object]] = []
    stmts = list(scene.statements)
    for c in scene.comments:
        owner = next((i for i, st in enumerate(stmts) if st.span.line <= c.span.line <= st.span.end_line), None)
        if owner is None:
            items.append((c.span.line, c.span.line, "c", c))
        elif c.span.line == stmts[owner].span.end_line and c.trailing:
            trailing.setdefault(owner, []).append(c)
        else:  # a comment inside a multi-line statement moves above it
            leading_inside.setdefault(owner, []).append(c)
    for i, st in enumerate(stmts):
        first = min([st.span.line] + [c.span.line for c in leading_inside.get(i, [])])
        last = max([st.span.end_line] + [c.span.line for c in trailing.get(i, [])])
        items.append((first, last, "st", i))
    items.sort(key=lambda x: (x[0], 0 if x[2] == "c" else 1))

    # paragraphs: runs of items without a blank line between them
    out: list[str] = []
    para: list[tuple[int, int, str, object]] = []
    prev_end = None

    def flush() -> None:
        if not para:
            return
        sts = [stmts[x[3]] for x in para if x[2] == "st"]
        name_of = lambda st: (rename or {}).get(st.name, st.name)  # noqa: E731
        width = max((len(name_of(st)) for st in sts if st.args and st.name != VERSION_STATEMENT), default=0)
        arg_widths: dict[str, int] = {}
        for st in sts:
            if len(st.args) >= 2:
                arg_widths[name_of(st)] = max(arg_widths.get(name_of(st), 0), len(format_value(st.args[0])))
        rendered: list[tuple[str, object]] = []  # (text, owner) with owner None for a comment line
        for _, _, kind, obj in para:
            if kind == "c":
                rendered.append((obj.text, None))
                continue
            st = stmts[obj]
            rendered.extend((c.text, None) for c in leading_inside.get(obj, []))
            text = format_statement(st, 0 if st.name == VERSION_STATEMENT else width, rename,
                                    arg_widths.get(name_of(st), 0))
            rendered.append((text, obj))
        # trailing comments on consecutive lines line up in one column (gofmt's rule), unless that
        # column would be too far right
        runs: list[list[int]] = []
        for i, (_, obj) in enumerate(rendered):
            if obj is not None and trailing.get(obj):
                if runs and runs[-1][-1] == i - 1:
                    runs[-1].append(i)
                else:
                    runs.append([i])
        column = {}
        for run in runs:
            col = max(len(rendered[i][0].splitlines()[-1]) for i in run) + 2
            column.update({i: col for i in run})
        for i, (text, obj) in enumerate(rendered):
            if i in column:
                last = len(text.splitlines()[-1])
                pad = column[i] - last if column[i] <= COMMENT_COLUMN_LIMIT else 2
                text += " " * pad + " ".join(c.text for c in trailing[obj])
            out.append(text)
        para.clear()

    for item in items:
        if prev_end is not None and blank_between(prev_end, item[0]):
            flush()
            out.append("")
        para.append(item)
        prev_end = item[1]
    flush()
    return "\n".join(out).rstrip() + "\n" if out else ""


def format_source(text: str, rename: Mapping[str, str] | None = None, path: str = "<string>") -> str:
    """Canonical text; raises ValueError when the text has syntax errors (nothing is ever dropped)."""
    result = parse(text, path)
    if result.diagnostics:
        first = result.diagnostics[0]
        raise ValueError(f"{path}:{first.span.line}:{first.span.col}: cannot format: {first.message}")
    return format_scene(result.scene, rename)
