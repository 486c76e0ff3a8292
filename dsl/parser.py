"""Text → `Scene`. Splits the source into logical statements, parses each with the Lark grammar,
and turns every syntax error into a `Diagnostic` with a tailored message where the mistake is a
known one (decimal comma, missing comma between keys, unclosed parenthesis, ``^`` for power…).

Each statement is parsed on its own, so one mistake never hides the errors in later lines.

`parse` never raises: any string, however long or strange (NUL bytes, lone surrogates, control
characters, CR-only line breaks), comes back as a `ParseResult`. Every pass is linear in the length
of the text, and the limits below refuse what would only waste time and memory, each with a
diagnostic and a help line:

- `MAX_SOURCE_LENGTH` characters in a scene and `MAX_STATEMENT_LENGTH` in one statement (backstops:
  a real scene is a few KB, and a schedule of one key per frame for an hour of video about 1 MB);
- `MAX_EXPR_NODES` operators and parentheses in one expression (a key's value, or a statement's
  value), counted by a linear scan before Lark builds a tree;
- `MAX_EXPR_DEPTH` levels of nesting in an expression (parentheses, calls, operands on the right;
  a left-associative chain `1+0+…+0` is flat and does not count), and `MAX_EXPR_HEIGHT` levels of the
  tree all told, since every later pass walks it recursively;
- `MAX_NUMBER_LENGTH` characters in a numeric literal (number, size, time, key frame), so that no
  conversion ever meets Python's limit on integer digits. A float literal that overflows, `1e400`,
  is kept as infinity and the compiler range-checks it.

A UTF-8 byte-order mark before the first line is ignored (columns on line 1 count after it; offsets
stay offsets into the text as given), and a lone ``\r`` ends a line, as in Python's universal
newlines, which is how `dfm` reads a file (`ir.source_lines` splits the same way).
"""

from __future__ import annotations

import bisect
import gc
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import ir
from .diagnostics import Diagnostic, error

MAX_SYNTAX_ERRORS = 50
MAX_EXPR_DEPTH = 200  # levels of real nesting; a left-associative chain `a+b+c` counts as one level
# The tree's height, a chain's links included: every later pass walks the tree recursively (~1 Python frame
# a level), so this keeps them all well inside Python's recursion limit of 1000. The work an expression
# costs is bounded by MAX_EXPR_NODES.
MAX_EXPR_HEIGHT = 500
MAX_EXPR_NODES = 10_000  # operators and parentheses in one expression; checked before Lark builds a tree
MAX_NUMBER_LENGTH = 100  # characters in one numeric literal: a float has 17 significant digits
MAX_STATEMENT_LENGTH = 2 * 1024 * 1024  # characters in one statement: Lark needs ~400 bytes a character
MAX_SOURCE_LENGTH = 8 * 1024 * 1024  # characters in a scene


class _Refused(Exception):
    """A statement that parsed but is past one of the limits: it becomes this one diagnostic."""

    def __init__(self, span: ir.Span, message: str, help: str):
        super().__init__(message)
        self.span, self.message, self.help = span, message, help


@lru_cache(maxsize=1)
def grammar_parser() -> Lark:
    text = resources.files(__package__).joinpath("dfm.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", start="statement", propagate_positions=True, maybe_placeholders=False)


@dataclass(frozen=True)
class ParseResult:
    scene: ir.Scene
    diagnostics: list[Diagnostic]


# ---- positions -------------------------------------------------------------------------------


def _normalized(text: str) -> str:
    """The text the passes below read: of the same length as `text`, so every offset is an offset into
    `text` too; a lone ``\\r`` made a ``\\n`` and a leading byte-order mark a space."""
    if "\r" in text:
        text = re.sub(r"\r(?!\n)", "\n", text)
    if text.startswith(ir.BOM):
        text = " " + text[1:]
    return text


class _Lines:
    """Offset → (line, col) for one source text whose line breaks are ``\\n`` (see `_normalized`).
    `first` is where line 1 starts: 1 after a byte-order mark, so its columns are the ones an editor shows."""

    def __init__(self, text: str, first: int = 0):
        self.starts = [first] + [m.end() for m in re.finditer("\n", text)]

    def span(self, start: int, end: int) -> ir.Span:
        start = max(start, self.starts[0])
        line = bisect.bisect_right(self.starts, start)
        end_line = bisect.bisect_right(self.starts, max(start, end - 1)) if end > start else line
        end_col = (end - self.starts[end_line - 1]) + 1 if end > start else start - self.starts[line - 1] + 2
        return ir.Span(line, start - self.starts[line - 1] + 1, end_line, end_col, start, max(end, start + 1))


# ---- logical statements ------------------------------------------------------------------------


_TRIPLE_BODY = re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*')  # after the opening """, up to the closing one


def _next_code_line(text: str, pos: int) -> int:
    """The offset of the first line at or after `pos` (just after a newline) that is neither blank nor a
    comment only, or len(text)."""
    n = len(text)
    j = pos
    while j < n:
        k = text.find("\n", j)
        k = n if k < 0 else k
        stripped = text[j:k].strip(" \t\f\r")
        if stripped and not stripped.startswith("#"):
            break
        j = k + 1
    return min(j, n)


def _continues_statement(text: str, j: int) -> bool:
    """Whether the code line starting at `j` continues the statement before it (it does not start one)."""
    if j >= len(text):
        return False
    first = text[j]
    return first in " \t" or "0" <= first <= "9" or first in ".)(,"


def _string_end(text: str, i: int) -> int:
    """The offset just after the string literal opening at `i`; an unclosed one ends at its line's end (a
    triple-quoted one at the end of the text)."""
    n = len(text)
    c = text[i]
    if text.startswith('"""', i):  # read as the grammar's STRING reads it: `\\"""` is not the end
        k = _TRIPLE_BODY.match(text, i + 3).end()
        return k + 3 if text.startswith('"""', k) else n
    k = i + 1
    while k < n and text[k] not in (c, "\n"):  # a backslash does not escape a newline
        k += 2 if text[k] == "\\" and k + 1 < n and text[k + 1] != "\n" else 1
    return k + 1 if k < n and text[k] == c else k


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

    # (from, to): the lines from offset `from` up to offset `to` are blank or comments, and `to` is the
    # start of the next code line (or n). Kept so that a run of blank lines is scanned once, not once
    # per line: the look-ahead stays linear.
    skipped = (-1, -1)

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
                cont = False
                if depth > 0 or last_sig == ",":
                    if not skipped[0] <= i + 1 <= skipped[1]:
                        skipped = (i + 1, _next_code_line(text, i + 1))
                    cont = _continues_statement(text, skipped[1])
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
            i = _string_end(text, i)
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
                w, h = re.split("[xX]", self.literal(tok))
                return ir.Size(int(w), int(h), self.span_of(tok))
            if kind == "duration":
                return self.time(node.children[0])
            if kind == "word":
                tok = node.children[0]
                return ir.Word(str(tok), self.span_of(tok))
            if kind == "composite":
                return ir.Composite(tuple(self.prompt_part(p) for p in node.children), self.span_of(node))
        return self.expr(node)

    def prompt_part(self, node: Tree) -> ir.PromptPart:
        tok = node.children[0]
        text = ir.String(string_value(str(tok)), self.span_of(tok))
        weight = self.expr(node.children[1]) if node.data == "weighted" else None
        return ir.PromptPart(text, weight, self.span_of(node))

    def literal(self, tok: Token) -> str:
        """A numeric literal's text, refused past MAX_NUMBER_LENGTH so that `int()` and `float()` of it
        stay cheap and never raise (`int` refuses more than 4,300 digits)."""
        text = str(tok)
        if len(text) > MAX_NUMBER_LENGTH:
            raise _Refused(self.span_of(tok), f"a number {len(text):,} characters long (at most {MAX_NUMBER_LENGTH})",
                           "no value needs that many digits: write it with fewer, or with an exponent (`1e30`)")
        return text

    def time(self, tok: Token) -> ir.Time:
        if tok.type == "STRING":  # Deforum's quoted frame: an expression of scene constants such as max_f
            inner = string_value(str(tok))
            st = parse_statement(f"key {inner}")
            if st is None or len(st.args) != 1 or not isinstance(st.args[0], ir.EXPR_NODES):
                raise _Refused(self.span_of(tok), f"the quoted key {str(tok)[:40]} is not an expression",
                               'write a frame (`10`), a time (`4s`) or an expression of max_f (`"max_f-2"`)')
            return ir.Time(float("nan"), "x", str(tok), self.span_of(tok), ir.respan(st.args[0], self.span_of(tok)))
        text = self.literal(tok)
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

    def expr(self, node, depth: int = 0, height: int = 0) -> ir.Expr:
        """`depth` counts real nesting, `height` every level of the tree (see MAX_EXPR_DEPTH)."""
        if isinstance(node, Token):  # only reachable through inlined single-token rules
            raise AssertionError(f"unexpected token {node!r}")
        if depth > MAX_EXPR_DEPTH:
            raise _Refused(self.span_of(node), f"expression nested more than {MAX_EXPR_DEPTH} levels deep",
                           "split it into keyframes, or simplify it")
        if height > MAX_EXPR_HEIGHT:
            raise _Refused(self.span_of(node), f"expression nested more than {MAX_EXPR_HEIGHT} operations deep, "
                           "counting each operator of a chain like `a+b+…`", "split it into keyframes, or simplify it")
        kind, ch = node.data, node.children
        span = self.span_of(node)
        d, h = depth + 1, height + 1
        if kind in ("binary", "compare", "bit_or", "bit_and"):
            # the left operand continues a left-associative chain: one level of nesting however long it is
            left = self.expr(ch[0], depth if _same_chain(kind, ch[0]) else d, h)
            right = self.expr(ch[-1], d, h)
            op = {"bit_or": "|", "bit_and": "&"}.get(kind) or str(ch[1])
            return ir.Binary(op, left, right, span)
        if kind == "number":
            text = self.literal(ch[0])
            return ir.Number(float(text), text, span)
        if kind == "variable":
            return ir.Variable(str(ch[0]), span)
        if kind == "call":
            args = tuple(self.expr(a, d, h) for a in ch[1:] if a is not None)
            return ir.Call(str(ch[0]), args, span, self.span_of(ch[0]))
        if kind == "unary":
            return ir.Unary(str(ch[0]), self.expr(ch[1], d, h), span)
        if kind == "power":
            return ir.Binary("**", self.expr(ch[0], d, h), self.expr(ch[1], d, h), span)
        raise AssertionError(f"unknown expression node {kind}")


def _same_chain(kind: str, left) -> bool:
    """Whether `left`, the left operand of a `kind` node, is a link of the same chain (`(a+b)+c` as well:
    the parentheses make no level of their own in the tree)."""
    return isinstance(left, Tree) and left.data == kind


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
    "_AND": "`and`",
    "_WEIGHT": "`weight`",
    "$END": "the end of the statement",
}


def _expected_words(expected) -> str:
    words = sorted({_WORDS.get(e, e.lower()) for e in expected})
    if len(words) > 6:
        words = words[:6] + ["…"]
    return ", ".join(words)


def _number_before(chunk: str, pos: int) -> str:
    """The digits and dots just before `pos`; "" when there are none, or more than a number can have.
    A backward scan, not `re.search("[0-9.]+$")`, which would try every start: quadratic on a long line."""
    i = pos
    while i > 0 and chunk[i - 1] in "0123456789." and pos - i <= MAX_NUMBER_LENGTH:
        i -= 1
    return chunk[i:pos] if pos - i <= MAX_NUMBER_LENGTH else ""


_DIGITS = re.compile("[0-9]+")


def _number_after(chunk: str, pos: int) -> str:
    m = _DIGITS.match(chunk, pos, pos + MAX_NUMBER_LENGTH + 1)
    return m.group(0) if m and len(m.group(0)) <= MAX_NUMBER_LENGTH else ""


def _shown(text: str, most: int = 40) -> str:
    """A token's text as a message quotes it: a 1 MB string token must not make a 1 MB message."""
    return text if len(text) <= most else text[: most - 1] + "…"


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
                         help=f"write `{_number_before(chunk, chunk[:pos].rstrip().rfind(':')) or '0'}:"
                         f"({_shown(str(tok))})`")
        if pos == 0 or not chunk[:pos].strip():
            if tok.type in ("NUMBER", "DURATION"):
                return error("DFM012", "a keyframe on a line of its own", at(pos, tok.end_pos), path=path,
                             help="end the previous line with a comma to continue its keyframes")
            return error("DFM001", f"a statement starts with a name, not {_shown(str(tok))!r}", at(pos, tok.end_pos),
                         path=path, help="write `parameter value`, e.g. `zoom 1.02` or `prompt 0 \"a cat\"`")
        if tok.type == "COMPARE" and "COMPARE" not in expected:
            return error("DFM001", f"comparisons cannot be chained: {_shown(str(tok))!r}", at(pos, tok.end_pos),
                         path=path, help="combine two comparisons with `&`: `(a < b) & (b < c)`")
        return error("DFM001", f"unexpected token {_shown(str(tok))!r}",
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


# ---- limits checked before Lark builds a tree ---------------------------------------------------------

# What the expression bound counts, and what it skips: strings (closed or not, as the grammar reads
# them) and comments. Each alternative matches in one pass, so the scan is linear.
_SCAN = re.compile(r"""
      \"\"\"(?:[^"\\]|\\[\s\S]|"(?!""))*(?:\"\"\"|\\?\Z)    # a triple-quoted string, maybe unclosed
    | "(?:[^"\\\n]|\\.)*"?                              # a string, maybe unclosed at the line's end
    | '(?:[^'\\\n]|\\.)*'?
    | \#[^\n]*                                         # a comment
    | [(),]
    | [-+*/%&|<>=!~^]+                                 # operators: each character counts
""", re.VERBOSE)


_BLANKS = re.compile(r"[ \t\f\r\n]*")
_LEAD = re.compile(r"[ \t\f\r\n]*(?:[A-Za-z_][A-Za-z0-9_]*[ \t\f\r\n]*)?")


def _expression_too_large(chunk: str) -> tuple[int, int] | None:
    """(start, end) of the first expression with more than MAX_EXPR_NODES operators and parentheses, or
    None. An expression is what lies between two commas outside parentheses (a key, or a statement's
    value); a flat `1+1+…+1` of a megabyte would otherwise become a Lark tree of a gigabyte before the
    depth limit refuses it."""
    count, depth = 0, 0
    first = _LEAD.match(chunk).end()  # where the current expression starts: after the statement's name
    for m in _SCAN.finditer(chunk):
        c = m.group()[0]
        if c in "\"'#":
            continue
        if c == ",":
            if depth == 0:
                count, first = 0, _BLANKS.match(chunk, m.end()).end()
            continue
        if c == ")":
            depth = max(0, depth - 1)
            continue
        if c == "(":
            depth += 1
        count += m.end() - m.start()
        if count > MAX_EXPR_NODES:
            return first, m.end()
    return None


# ---- entry point -----------------------------------------------------------------------------------


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing allocates millions of objects and frees none, so every
    collection it triggers would walk them all again for nothing. With it on, a 1 MB scene parses at
    twice the time per KB of a 100 KB one; with it off, at the same. (Reference counting still frees
    everything; the collector only looks for cycles, and resumes afterwards.)"""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def parse(text: str, path: str = "<string>") -> ParseResult:
    """Parse a whole scene. Never raises on bad input: errors come back as diagnostics."""
    with _no_cyclic_gc():
        return _parse(text, path)


def _parse(text: str, path: str) -> ParseResult:
    source = text
    text = _normalized(text)
    lines = _Lines(text, 1 if source.startswith(ir.BOM) else 0)
    if len(text) > MAX_SOURCE_LENGTH:
        return ParseResult(ir.Scene((), (), source=source, path=path), [error(
            "DFM001", f"the scene is {len(text):,} characters long (at most {MAX_SOURCE_LENGTH:,})",
            lines.span(0, 1), path=path, help="a scene is a script of settings and schedules, not data: "
            "split it, or generate the long schedules as expressions")])
    parser = grammar_parser()
    ranges, comment_ranges = split_statements(text)
    statements: list[ir.Statement] = []
    diags: list[Diagnostic] = []

    def refuse(span: ir.Span, message: str, help: str) -> None:
        if len(diags) < MAX_SYNTAX_ERRORS:
            diags.append(error("DFM001", message, span, path=path, help=help))

    for start, end in ranges:
        if end - start > MAX_STATEMENT_LENGTH:
            refuse(lines.span(start, start + 1),
                   f"a statement {end - start:,} characters long (at most {MAX_STATEMENT_LENGTH:,})",
                   "write the schedule with fewer keys (values between keys are interpolated), or as an "
                   "expression of `t`")
            continue
        chunk = text[start:end]
        large = _expression_too_large(chunk)
        if large is not None:
            refuse(lines.span(start + large[0], start + large[1]),
                   f"expression with more than {MAX_EXPR_NODES:,} operators and parentheses",
                   "split it into keyframes, or simplify it")
            continue
        try:
            tree = parser.parse(chunk)
        except UnexpectedInput as exc:
            if len(diags) < MAX_SYNTAX_ERRORS:
                diags.append(syntax_diagnostic(exc, chunk, start, lines, path))
            continue
        builder = _Builder(lines, start, chunk)
        try:
            statements.append(builder.statement(tree))
        except _Refused as exc:
            refuse(exc.span, exc.message, exc.help)
    comments = tuple(
        ir.Comment(text[a:b].rstrip(), trailing, lines.span(a, b)) for a, b, trailing in comment_ranges
    )
    scene = ir.Scene(tuple(statements), comments, source=source, path=path)
    return ParseResult(scene, diags)


def parse_statement(text: str) -> ir.Statement | None:
    """One statement from a string (e.g. a Deforum schedule pasted inside quotes), or None if it does not
    parse; spans are relative to `text`."""
    result = parse(text)
    if result.diagnostics or len(result.scene.statements) != 1:
        return None
    return result.scene.statements[0]
