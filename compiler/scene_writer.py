"""The .dfm text an importer writes: IR nodes in paragraphs, printed by dfm's formatter.

Importers never write .dfm syntax themselves. They build statements (`dsl/ir.py`) with the helpers here
and hand them to a `SceneWriter`, which prints them with `dsl/formatter.py`: one string quoter, one
number style, one layout for every `.dfm` text dfm produces, typed or imported.

The IR has no place for comments inside a statement list (the parser keeps comments apart, by line), so
the writer holds paragraphs of statements *and* comments (`ir.Comment`, printed as they are) and prints
them in order, a blank line between paragraphs; `format_source` then aligns the result as `dfm fmt` does.
`SceneWriter.check` compiles the text and turns every statement the compiler rejects into a comment, so an
import always ends in a scene that checks clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..dsl import ir
from ..dsl.formatter import format_source, format_statement, format_value
from ..dsl.parser import parse_statement
from .catalogue import VERSION_STATEMENT, Param
from .interop import number_text

Item = ir.Statement | ir.Comment

# ---- nodes ---------------------------------------------------------------------------------------------


def number(x: float, text: str | None = None) -> ir.Expr:
    """A number as the parser would build it from `text` (default: the shortest decimal); negative
    numbers are a unary minus, as in the grammar."""
    text = number_text(x) if text is None else text
    if text.startswith("-"):
        return ir.Unary("-", ir.Number(-float(x), text[1:]))
    return ir.Number(float(x), text)


def word(text: str) -> ir.Value:
    """A bare word: `3d` (a Word) or `lab`, `on`, `iter` (names)."""
    return ir.Word(text) if text[:1].isdigit() else ir.Variable(text)


def string(text: str) -> ir.String:
    return ir.String(text)


def key(frame: int, value: ir.Expr, curve: str | None = None) -> ir.Key:
    return ir.Key(ir.Time(float(frame), "f", str(frame)), value, curve or None)


def keys(items: Iterable[ir.Key]) -> ir.KeyList:
    return ir.KeyList(tuple(items))


def statement(name: str, *args: ir.Value) -> ir.Statement:
    return ir.Statement(name, tuple(args))


def comment(text: str) -> ir.Comment:
    """A comment line; `text` without the leading `#`. A line break inside (a file name may hold one) becomes a
    space: the rest of the text would otherwise be read as statements."""
    return ir.Comment(f"# {' '.join(text.splitlines())}".rstrip(), trailing=False)


def commented(st: ir.Statement, note: str = "") -> ir.Comment:
    """A statement left as a comment (on one line, so that deleting one `#` brings it back)."""
    text = " ".join(line.strip() for line in format_statement(st).splitlines())
    return comment(text + (f"   # {note}" if note else ""))


def expression(text: str) -> ir.Expr | None:
    """A dfm expression parsed from text, or None when the text is not one expression."""
    st = parse_statement(f"x {text}")
    if st is None or len(st.args) != 1:
        return None
    arg = st.args[0]
    return arg if isinstance(arg, (ir.Number, ir.Variable, ir.Call, ir.Unary, ir.Binary)) else None


def values_text(*args: ir.Value) -> str:
    """Statement values as the formatter writes them (`"model.safetensors" sha256 "…"`)."""
    return " ".join(format_value(a) for a in args)


def value_of(p: Param, v: object) -> ir.Value:
    """A resolved setting value (as in `Settings`) as the IR node a scene would hold."""
    if isinstance(v, bool):
        return word("on" if v else "off")
    if p.type in ("path", "string", "model"):
        return string(str(v))
    if isinstance(v, tuple) and len(v) == 2:
        return ir.Size(int(v[0]), int(v[1]))
    if isinstance(v, (int, float)):
        return number(v)
    return word(str(v))


# ---- the writer ----------------------------------------------------------------------------------------


class SceneWriter:
    """Paragraphs of statements and comments → the formatted `.dfm` text."""

    def __init__(self) -> None:
        self.paragraphs: list[list[Item]] = []

    def paragraph(self, items: Iterable[Item]) -> None:
        self.paragraphs.append(list(items))

    def render(self) -> tuple[str, dict[int, tuple[int, int]]]:
        """The text (statements printed by the formatter, unaligned) and, per line, the item it shows."""
        lines: list[str] = []
        owner: dict[int, tuple[int, int]] = {}
        for pi, para in enumerate(self.paragraphs):
            if not para:
                continue
            if lines:
                lines.append("")
            for ii, item in enumerate(para):
                text = item.text if isinstance(item, ir.Comment) else format_statement(item)
                for line in text.split("\n"):
                    lines.append(line)
                    owner[len(lines)] = (pi, ii)
        return "\n".join(lines) + "\n", owner

    def errors(self) -> list:
        """The compiler's errors for the text as it stands."""
        from .compile import compile_source

        return [d for d in compile_source(self.render()[0], build_table=False).diagnostics if d.is_error]

    def check(self, rejected: Callable[[ir.Statement, str], None], rounds: int = 20) -> None:
        """Comment out every statement the compiler rejects (calling `rejected(statement, why)` for each),
        until the scene checks clean. The version statement is never touched."""
        for _ in range(rounds):
            errors, owner = self.errors(), self.render()[1]
            bad: dict[tuple[int, int], str] = {}
            for d in errors:
                at = owner.get(d.span.line)
                item = self.paragraphs[at[0]][at[1]] if at else None
                if isinstance(item, ir.Statement) and item.name != VERSION_STATEMENT and at not in bad:
                    bad[at] = d.message
            if not bad:
                return
            for (pi, ii), why in sorted(bad.items()):
                st = self.paragraphs[pi][ii]
                rejected(st, why)
                self.paragraphs[pi][ii] = commented(st)

    def text(self) -> str:
        """The scene in `dfm fmt`'s layout."""
        return format_source(self.render()[0])


__all__ = ["SceneWriter", "number", "word", "string", "key", "keys", "statement", "comment", "commented",
           "expression", "values_text", "value_of"]
