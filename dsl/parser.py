"""Text → `Scene`. Splits the source into logical statements, parses each with the Lark grammar,
and turns every syntax error into a `Diagnostic` with a tailored message where the mistake is a
known one (decimal comma, missing comma between keys, unclosed parenthesis, ``^`` for power…).

Each statement is parsed on its own, so one mistake never hides the errors in later lines.
"""

from __future__ import annotations

import bisect
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ir
from .diagnostics import Diagnostic, error

MAX_SYNTAX_ERRORS = 50
MAX_EXPR_DEPTH = 200  # deeper expressions are refused: every later pass walks the tree recursively


class _TooDeep(Exception):
    def __init__(self, span: ir.Span):
        self.span = span


@lru_cache(maxsize=1)
def grammar_parser() -> Lark:
    text = resources.files(__package__).joinpath("dfm.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", start="statement", propagate_positions=True, maybe_placeholders=False)


@dataclass(frozen=True)
class ParseResult:
    scene: ir.Scene
    diagnostics: list[Diagnostic]


# ---- positions -------------------------------------------------------------------------------


class _Lines:
    """Offset → (line, col) for one source text."""

    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def span(self, start: int, end: int) -> ir.Span:
        line = bisect.bisect_right(self.starts, start)
        end_line = bisect.bisect_right(self.starts, max(start, end - 1)) if end > start else line
        end_col = (end - self.starts[end_line - 1]) + 1 if end > start else start - self.starts[line - 1] + 2
        return ir.Span(line, start - self.starts[line - 1] + 1, end_line, end_col, start, max(end, start + 1))


# ---- logical statements ------------------------------------------------------------------------


def split_statements(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, bool]]]:
    """Return (statement ranges, comment ranges with a 'trailing' flag) as character offsets.

    A statement ends at a newline, unless the line ends with a comma or a parenthesis is open and
    the next line is a continuation (it does not start a new statement at column 0), or a
    triple-quoted string is open.
    """
    statements: list[tuple[int, int]] = []
    comments: list[tuple[int, int, bool]] = []
    n = len(text)
    i = 0
    start: int | None = None  # start of the current statement
    depth = 0
    last_sig = ""  # last significant character on the current line
    line_has_code = False

    def next_line_continues(pos: int) -> bool:
        # pos is just after a newline: skip blank and comment-only lines, look at the first code line
        j = pos
        while j < n:
            k = text.find("\n", j)
            k = n if k < 0 else k
            stripped = text[j:k].strip()
            if stripped and not stripped.startswith("#"):
                first = text[j]
                return first in " \t" or first.isdigit() or first in ".)(,"
            j = k + 1
        return False

    while i < n:
        c = text[i]
        if c == "#":
            k = text.find("\n", i)
            k = n if k < 0 else k
            comments.append((i, k, line_has_code))
            i = k
            continue
        if c == "\n":
            if start is not None:
                cont = (depth > 0 or last_sig == ",") and next_line_continues(i + 1)
                if not cont:
                    statements.append((start, i))
                    start, depth = None, 0
            # last_sig survives blank and comment lines: a key list may have them between its keys
            line_has_code = False
            i += 1
            continue
        if c in " \t\r\f":
            i += 1
            continue
        if start is None:
            start = i
        line_has_code = True
        if c in "\"'":
            if text.startswith('"""', i):
                k = i + 3
                while True:
                    k = text.find('"""', k)
                    if k < 0:
                        k = n - 3
                        break
                    if text[k - 1] != "\\":
                        break
                    k += 1
                i = k + 3
            else:
                k = i + 1
                while k < n and text[k] not in (c, "\n"):
                    k += 2 if text[k] == "\\" else 1
                i = k + 1 if k < n and text[k] == c else k
            last_sig = c
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        last_sig = c
        i += 1
    if start is not None:
        statements.append((start, n))
    return statements, comments


# ---- tree → IR ----------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "r": "\r", "0": "\0"}


def unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body, flags=re.S)


def string_value(token_text: str) -> str:
    if token_text.startswith('"""'):
        body = token_text[3:-3]
        if body.startswith("\n"):
            body = body[1:]
        body = textwrap.dedent(body)
        body = re.sub(r"\n[ \t]*$", "", body)
        return unescape(body)
    return unescape(token_text[1:-1])


class _Builder:
    def __init__(self, lines: _Lines, offset: int, chunk: str):
        self.lines, self.offset, self.chunk = lines, offset, chunk

    def span_of(self, node) -> ir.Span:
        if isinstance(node, Token):
            return self.lines.span(self.offset + node.start_pos, self.offset + node.end_pos)
        meta = node.meta
        return self.lines.span(self.offset + meta.start_pos, self.offset + meta.end_pos)

    def statement(self, tree: Tree) -> ir.Statement:
        name, *rest = tree.children
        args = tuple(self.value(v) for v in rest)
        return ir.Statement(name=str(name), args=args, span=self.span_of(tree), name_span=self.span_of(name))

    def value(self, node) -> ir.Value:
        if isinstance(node, Tree):
            kind = node.data
            if kind == "keylist":
                keys = tuple(self.key(k) for k in node.children if isinstance(k, Tree))
                trailing = any(isinstance(k, Token) and k.type == "TRAILING_COMMA" for k in node.children)
                return ir.KeyList(keys, trailing, self.span_of(node))
            if kind == "string":
                tok = node.children[0]
                return ir.String(string_value(str(tok)), self.span_of(tok))
            if kind == "size":
                tok = node.children[0]
                w, h = re.split("[xX]", str(tok))
                return ir.Size(int(w), int(h), self.span_of(tok))
            if kind == "duration":
                return self.time(node.children[0])
            if kind == "word":
                tok = node.children[0]
                return ir.Word(str(tok), self.span_of(tok))
        return self.expr(node)

    def time(self, tok: Token) -> ir.Time:
        text = str(tok)
        if tok.type == "DURATION":
            return ir.Time(float(text[:-1]), text[-1], text, self.span_of(tok))
        return ir.Time(float(text), "f", text, self.span_of(tok))

    def key(self, tree: Tree) -> ir.Key:
        time_node, expr_node, *curve = tree.children
        tok = time_node.children[0] if isinstance(time_node, Tree) else time_node
        value = self.expr(expr_node)
        value_text = self.chunk[value.span.start - self.offset : value.span.end - self.offset]
        curve_tok = curve[0] if curve else None
        return ir.Key(
            at=self.time(tok),
            value=value,
            curve=str(curve_tok) if curve_tok is not None else None,
            span=self.span_of(tree),
            curve_span=self.span_of(curve_tok) if curve_tok is not None else ir.NO_SPAN,
            value_text=value_text,
        )

    def expr(self, node, depth: int = 0) -> ir.Expr:
        if isinstance(node, Token):  # only reachable through inlined single-token rules
            raise AssertionError(f"unexpected token {node!r}")
        if depth > MAX_EXPR_DEPTH:
            raise _TooDeep(self.span_of(node))
        kind, ch = node.data, node.children
        span = self.span_of(node)
        d = depth + 1
        if kind == "number":
            return ir.Number(float(ch[0]), str(ch[0]), span)
        if kind == "variable":
            return ir.Variable(str(ch[0]), span)
        if kind == "call":
            args = tuple(self.expr(a, d) for a in ch[1:] if a is not None)
            return ir.Call(str(ch[0]), args, span, self.span_of(ch[0]))
        if kind == "unary":
            return ir.Unary(str(ch[0]), self.expr(ch[1], d), span)
        if kind == "power":
            return ir.Binary("**", self.expr(ch[0], d), self.expr(ch[1], d), span)
        if kind in ("binary", "compare"):
            return ir.Binary(str(ch[1]), self.expr(ch[0], d), self.expr(ch[2], d), span)
        if kind == "bit_or":
            return ir.Binary("|", self.expr(ch[0], d), self.expr(ch[1], d), span)
        if kind == "bit_and":
            return ir.Binary("&", self.expr(ch[0], d), self.expr(ch[1], d), span)
        raise AssertionError(f"unknown expression node {kind}")


# ---- syntax errors in words ----------------------------------------------------------------------

_WORDS = {
    "NUMBER": "a number",
    "NAME": "a name",
    "STRING": "a string",
    "SIZE": "a size like 512x512",
    "DURATION": "a time like 4s",
    "WORD": "a word",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "TRAILING_COMMA": "','",
    "COLON": "':'",
    "COMPARE": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "TILDE": "'~'",
    "VBAR": "'|'",
    "AMPERSAND": "'&'",
    "__ANON_0": "'**'",
    "$END": "the end of the statement",
}


def _expected_words(expected) -> str:
    words = sorted({_WORDS.get(e, e.lower()) for e in expected})
    if len(words) > 6:
        words = words[:6] + ["…"]
    return ", ".join(words)


def _number_before(chunk: str, pos: int) -> str:
    m = re.search(r"[0-9.]+$", chunk[:pos])
    return m.group(0) if m else ""


def _number_after(chunk: str, pos: int) -> str:
    m = re.match(r"[0-9]+", chunk[pos:])
    return m.group(0) if m else ""


def _unclosed_paren(chunk: str) -> int | None:
    stack = []
    in_str = None
    for i, c in enumerate(chunk):
        if in_str:
            if c == in_str:
                in_str = None
            continue
        if c in "\"'":
            in_str = c
        elif c == "(":
            stack.append(i)
        elif c == ")" and stack:
            stack.pop()
    return stack[0] if stack else None


def syntax_diagnostic(exc: UnexpectedInput, chunk: str, offset: int, lines: _Lines, path: str) -> Diagnostic:
    """One diagnostic for one failed statement, tailored where the mistake is a known one."""
    at = lambda a, b: lines.span(offset + a, offset + b)  # noqa: E731
    if isinstance(exc, UnexpectedCharacters):
        pos, ch = exc.pos_in_stream, chunk[exc.pos_in_stream]
        if ch == "^":
            return error("DFM013", "'^' is not an operator in dfm", at(pos, pos + 1), path=path,
                         help="write powers with '**', as in Deforum: `2**3`")
        if ch in "\"'":
            return error("DFM002", "unterminated string", at(pos, pos + 1), path=path,
                         label="this string is never closed",
                         help=f"close it with {ch} on the same line, or use \"\"\" for a string over several lines")
        return error("DFM001", f"unexpected character {ch!r}", at(pos, pos + 1), path=path,
                     help="dfm values are numbers, names, \"strings\", sizes like 512x512 and keyframes like 0:(1)")
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok: Token = exc.token
        pos = tok.start_pos
        expected = set(exc.expected)
        if tok.type in ("COMMA", "TRAILING_COMMA"):
            before, after = _number_before(chunk, pos), _number_after(chunk, pos + 1)
            if before and after:
                fixed = f"{before}.{after}" if "." not in before else f"{before}{after}"
                return error("DFM011", f"decimal comma in the number `{before},{after}`",
                             at(pos - len(before), pos + 1 + len(after)), path=path,
                             label="a comma separates keyframes or arguments, it is not a decimal point",
                             help=f"use a dot: {fixed}")
        if tok.type in ("NUMBER", "DURATION") and "COMMA" in expected:
            return error("DFM012", "missing comma between keyframes", at(pos, tok.end_pos), path=path,
                         label="a new keyframe starts here",
                         help="separate keyframes with commas: `0:(1), 10:(2)`")
        if "LPAR" in expected and tok.type != "LPAR" and chunk[:pos].rstrip().endswith(":"):
            return error("DFM014", "a keyframe value must be in parentheses", at(pos, tok.end_pos), path=path,
                         help=f"write `{_number_before(chunk, chunk[:pos].rstrip().rfind(':')) or '0'}:({tok})`")
        if pos == 0 or not chunk[:pos].strip():
            if tok.type in ("NUMBER", "DURATION"):
                return error("DFM012", "a keyframe on a line of its own", at(pos, tok.end_pos), path=path,
                             help="end the previous line with a comma to continue its keyframes")
            return error("DFM001", f"a statement starts with a name, not {tok!r}", at(pos, tok.end_pos),
                         path=path, help="write `parameter value`, e.g. `zoom 1.02` or `prompt 0 \"a cat\"`")
        if tok.type == "COMPARE" and "COMPARE" not in expected:
            return error("DFM001", f"comparisons cannot be chained: {str(tok)!r}", at(pos, tok.end_pos), path=path,
                         help="combine two comparisons with `&`: `(a < b) & (b < c)`")
        return error("DFM001", f"unexpected token {str(tok)!r}",
                     at(pos, max(tok.end_pos, pos + 1)), path=path,
                     note=f"expected {_expected_words(expected)}",
                     help="check the statement against docs/language.md")
    # the statement ended too early
    expected = set(getattr(exc, "expected", ()) or ())
    paren = _unclosed_paren(chunk)
    if paren is not None:
        return error("DFM003", "unclosed parenthesis", at(paren, paren + 1), path=path,
                     label="this '(' is never closed", help="add the missing ')'")
    end = len(chunk.rstrip())
    return error("DFM001", "the statement ends too early", at(max(0, end - 1), end), path=path,
                 note=f"expected {_expected_words(expected) or 'more'}",
                 help="complete the statement, e.g. `zoom 0:(1.0), 10:(1.04)`")


# ---- entry point -----------------------------------------------------------------------------------


def parse(text: str, path: str = "<string>") -> ParseResult:
    """Parse a whole scene. Never raises on bad input: errors come back as diagnostics."""
    lines = _Lines(text)
    parser = grammar_parser()
    ranges, comment_ranges = split_statements(text)
    statements: list[ir.Statement] = []
    diags: list[Diagnostic] = []
    for start, end in ranges:
        chunk = text[start:end]
        try:
            tree = parser.parse(chunk)
        except (UnexpectedCharacters, UnexpectedToken, UnexpectedEOF) as exc:
            if len(diags) < MAX_SYNTAX_ERRORS:
                diags.append(syntax_diagnostic(exc, chunk, start, lines, path))
            continue
        builder = _Builder(lines, start, chunk)
        try:
            statements.append(builder.statement(tree))
        except _TooDeep as exc:
            diags.append(error("DFM001", f"expression nested more than {MAX_EXPR_DEPTH} levels deep", exc.span,
                               path=path, help="split it into keyframes, or simplify it"))
    comments = tuple(
        ir.Comment(text[a:b].rstrip(), trailing, lines.span(a, b)) for a, b, trailing in comment_ranges
    )
    scene = ir.Scene(tuple(statements), comments, source=text, path=path)
    return ParseResult(scene, diags)


def parse_statement(text: str) -> ir.Statement | None:
    """One statement from a string (e.g. a Deforum schedule pasted inside quotes), or None if it does not
    parse; spans are relative to `text`."""
    result = parse(text)
    if result.diagnostics or len(result.scene.statements) != 1:
        return None
    return result.scene.statements[0]
