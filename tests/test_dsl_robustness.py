"""The dsl stage never crashes and never loses work (issue 8): any string parses to a `ParseResult`
with diagnostics, whatever it holds; every limit is a diagnostic, not an exception; `dfm fmt` of a
scene that parses clean reads back as the same scene and is idempotent.

The brute-force test mutates the examples with a seeded `random` (no hypothesis): the same inputs on
every run, so a failure names its seed and can be replayed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dfm.dsl import ir
from dfm.dsl import parser as dsl_parser
from dfm.dsl.diagnostics import Diagnostic, render_concise, render_full, render_json
from dfm.dsl.formatter import format_scene, format_source, format_string
from dfm.dsl.lexer import DfmLexer
from dfm.dsl.parser import ParseResult, parse

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.dfm"))
EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]

# what a fuzzer, a bad paste or a strange editor puts into a file
PIECES = [
    "\x00", "\ud800", "\udfff", "\r", "\r\n", "\t", "\ufeff", "\x0b", "\x0c", "\x1b[2J", "\x85", "\u2028", "\xa0",
    "٣", "²", "😀", "é", "(", ")", ",", ":", '"', "'", '"""', "\\", "#", "\n", "\n  ", ",\n", "\n\n\n", " " * 40,
    "9" * 120, "1e400", "1,5", "^", "**", "0:(", "4s", "8b", "512x", "--neg", "\\r", "\\0",
]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 12)):
        op, i = rng.random(), rng.randrange(len(text) + 1)
        if op < 0.4:  # insert a hostile piece
            text = text[:i] + rng.choice(PIECES) + text[i:]
        elif op < 0.6:  # delete a few characters
            text = text[:i] + text[i + rng.randint(1, 20):]
        elif op < 0.75:  # splice in part of another example
            other = rng.choice(EXAMPLE_TEXTS)
            a = rng.randrange(len(other))
            text = text[:i] + other[a:a + rng.randint(1, 200)] + text[i:]
        elif op < 0.85:  # repeat a stretch
            j = i + rng.randint(1, 40)
            text = text[:i] + text[i:j] * rng.randint(2, 5) + text[j:]
        else:  # random code points, control characters and surrogates included
            text = text[:i] + "".join(chr(rng.randrange(0x3000)) for _ in range(rng.randint(1, 5))) + text[i:]
    return text


def inputs(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = ["", "\ufeff", "\r", "\x00" * 10, "\ud800", "dfm 1\r\rzoom 1\r"]
    while len(out) < count:
        out.append(mutate(rng, rng.choice(EXAMPLE_TEXTS)))
    return out


def assert_sane(text: str, result: ParseResult) -> None:
    """Every diagnostic and statement points inside the text, at a line that exists."""
    n_lines = len(ir.source_lines(text))
    spans = [d.span for d in result.diagnostics] + [st.span for st in result.scene.statements]
    for span in spans:
        assert 0 <= span.start <= span.end <= max(1, len(text)), span
        assert 1 <= span.line <= span.end_line <= n_lines, span
        assert span.col >= 1, span
    for d in result.diagnostics:
        assert isinstance(d, Diagnostic) and d.code.startswith("DFM") and d.help, d
        render_full(d, text).encode("utf-8")  # printable: no lone surrogate reaches the terminal
        render_concise(d).encode("utf-8")
    render_json(result.diagnostics).encode("utf-8")


def test_examples_are_there():
    assert len(EXAMPLE_TEXTS) >= 6


@pytest.mark.parametrize("seed", range(4))
def test_parse_and_fmt_never_raise_on_mutated_examples(seed):
    for i, text in enumerate(inputs(100, seed)):
        where = f"seed {seed}, input {i}: {text[:80]!r}"
        result = parse(text, "fuzz.dfm")
        assert isinstance(result, ParseResult), where
        assert_sane(text, result)
        list(DfmLexer().get_tokens(text))  # the highlighter never raises either
        if result.diagnostics:
            with pytest.raises(ValueError):  # refused whole, never formatted with a part dropped
                format_source(text)
            continue
        once = format_scene(result.scene)
        again = parse(once)
        assert not again.diagnostics, (where, once, again.diagnostics[:1])
        assert again.scene == result.scene, where  # same meaning
        assert format_scene(again.scene) == once, where  # idempotent


# ---- numbers: bounded, never an exception --------------------------------------------------------

LONG = "9" * 5000  # past Python's 4,300-digit limit on int()


@pytest.mark.parametrize("text", [
    f"size 64x{LONG}", f"size {LONG}x64", f"seed {LONG}", f"zoom 1.{LONG}", f"zoom {LONG}:(1)",
    f"zoom 0:(1), {LONG}s:(2)", f"duration {LONG}b", f"zoom 0:(sin({LONG}*t))", f"prompt {LONG} \"a\"",
])
def test_an_absurdly_long_number_is_a_diagnostic(text):
    result = parse(f"dfm 1\n{text}\n")
    assert [d.code for d in result.diagnostics] == ["DFM001"]
    d = result.diagnostics[0]
    assert "characters long" in d.message and d.help
    assert d.span.line == 2 and d.span.end - d.span.start >= 5000  # the span is the number itself
    assert [st.name for st in result.scene.statements] == ["dfm"]  # the statement is dropped, not half-read


def test_numbers_up_to_the_limit_are_read():
    digits = "9" * dsl_parser.MAX_NUMBER_LENGTH
    assert parse(f"seed {digits}").scene.statements[0].args[0].value == float(digits)
    size = parse(f"size 64x{'1' * (dsl_parser.MAX_NUMBER_LENGTH - 3)}").scene.statements[0].args[0]
    assert size.height == int("1" * (dsl_parser.MAX_NUMBER_LENGTH - 3))
    assert [d.code for d in parse(f"seed {digits}9").diagnostics] == ["DFM001"]


def test_a_float_that_overflows_is_infinity_for_the_compiler_to_range_check():
    (st,) = parse("zoom 1e400").scene.statements
    assert st.args[0].value == float("inf") and st.args[0].text == "1e400"


def test_digits_of_other_scripts_are_not_numbers():
    # Python's \d would take them, and int() would read them; Deforum and numexpr would not
    assert [d.code for d in parse("zoom ٣").diagnostics] == ["DFM001"]
    assert [d.code for d in parse("size ٥١٢x٥١٢").diagnostics] == ["DFM001"]


def test_check_of_a_huge_size_reports_instead_of_crashing():
    from dfm.api import check_text

    diags = check_text(f'dfm 1\nsize 64x{LONG}\nprompt 0 "a"\n', "s.dfm")
    assert [d.code for d in diags if d.is_error] == ["DFM001"]


# ---- byte-order mark and line breaks ------------------------------------------------------------


def test_a_byte_order_mark_is_ignored_and_columns_stay_right():
    plain = "dfm 1\nzoom 0:(1), 10:(2)  # c\n"
    result = parse("\ufeff" + plain)
    assert not result.diagnostics
    assert result.scene == parse(plain).scene
    first, second = result.scene.statements
    assert (first.span.line, first.span.col, first.span.start) == (1, 1, 1)  # offsets into the text as given
    assert (second.span.line, second.span.col, second.span.start) == (2, 1, 7)
    assert result.scene.comments[0].text == "# c"


def test_columns_after_a_byte_order_mark_in_a_diagnostic():
    text = "\ufeffzoom @\n"
    (d,) = parse(text).diagnostics
    assert (d.span.line, d.span.col, d.span.start) == (1, 6, 6)
    shown = render_full(d, text).splitlines()
    assert shown[2] == "1 | zoom @" and shown[3].index("^") == shown[2].index("@")


def test_a_byte_order_mark_is_not_a_missing_version_line():
    from dfm.api import check_text

    codes = [d.code for d in check_text('\ufeffdfm 1\nprompt 0 "a"\n', "s.dfm")]
    assert "DFM020" not in codes and "DFM001" not in codes


def test_fmt_drops_the_byte_order_mark():
    assert format_source("\ufeffdfm 1\nzoom 1\n") == "dfm 1\nzoom 1\n"


def test_a_lone_carriage_return_ends_a_line():
    lf = "dfm 1\nzoom 0:(1),\n  10:(2)\nangle 1\n"
    for text in (lf.replace("\n", "\r"), lf.replace("\n", "\r\n")):
        result = parse(text)
        assert not result.diagnostics
        assert result.scene == parse(lf).scene
        assert [(st.span.line, st.span.end_line) for st in result.scene.statements] == [(1, 1), (2, 3), (4, 4)]


def test_diagnostic_lines_agree_with_the_parser_where_splitlines_would_not():
    # str.splitlines also breaks at \x85, \u2028, \x0c...: the shown line would be the wrong one
    text = 'prompt 0 "a\x85b\u2028c"\nzoom @\n'
    (d,) = parse(text).diagnostics
    assert d.span.line == 2
    assert "2 | zoom @" in render_full(d, text)


def test_control_characters_are_not_sent_to_the_terminal():
    text = "zoom 1 \x1b[2J @\n"
    d = parse(text).diagnostics[0]
    shown = render_full(d, text)
    assert "\x1b" not in shown
    lines = shown.splitlines()
    assert lines[3].index("^") == lines[2].index("\ufffd")  # still one column per character


# ---- limits checked before Lark builds a tree ----------------------------------------------------


class _CountingParser:
    """Stands in for the Lark parser and records the length of every statement handed to it."""

    def __init__(self, real):
        self.real, self.lengths = real, []

    def parse(self, chunk):
        self.lengths.append(len(chunk))
        return self.real.parse(chunk)


@pytest.fixture
def lark_calls(monkeypatch):
    counting = _CountingParser(dsl_parser.grammar_parser())
    monkeypatch.setattr(dsl_parser, "grammar_parser", lambda: counting)
    return counting.lengths


def test_a_huge_flat_expression_is_refused_before_lark_sees_it(lark_calls):
    text = "dfm 1\nzoom " + "1+" * 500_000 + "1\nangle 1\n"  # 1 MB
    result = parse(text)
    (d,) = result.diagnostics
    assert d.code == "DFM001" and f"{dsl_parser.MAX_EXPR_NODES:,} operators" in d.message and d.help
    assert (d.span.line, d.span.col) == (2, 6)  # from the start of the expression
    assert max(lark_calls) < 100  # only `dfm 1` and `angle 1` were parsed
    assert [st.name for st in result.scene.statements] == ["dfm", "angle"]


def test_the_expression_bound_is_per_key_and_skips_strings_and_comments(lark_calls):
    n = dsl_parser.MAX_EXPR_NODES
    keys = ", ".join(f"{i}:(1+2*3)" for i in range(n // 2))  # many small keys: far more operators in all
    text = f'zoom {keys}\nprompt 0 "{"-" * (2 * n)}"  # {"+" * (2 * n)}\n'
    assert parse(text).diagnostics == []
    assert [d.code for d in parse("zoom 0:(" + "+".join(["1"] * (n + 2)) + ")").diagnostics] == ["DFM001"]
    assert [d.code for d in parse("zoom max(1, " + "-" * (n + 1) + "1)").diagnostics] == ["DFM001"]


def test_a_deep_expression_under_the_node_bound_still_meets_the_depth_limit():
    result = parse("zoom " + "-" * (dsl_parser.MAX_EXPR_DEPTH + 10) + "1")
    assert [d.code for d in result.diagnostics] == ["DFM001"] and "nested" in result.diagnostics[0].message


def test_a_statement_past_the_length_limit_is_refused_before_lark(monkeypatch, lark_calls):
    monkeypatch.setattr(dsl_parser, "MAX_STATEMENT_LENGTH", 1000)
    keys = ", ".join(f"{i}:(1)" for i in range(300))
    result = parse(f"dfm 1\nzoom {keys}\nangle 1\n")
    (d,) = result.diagnostics
    assert "statement" in d.message and "1,000" in d.message and d.help and d.span.line == 2
    assert max(lark_calls) < 1000
    assert [st.name for st in result.scene.statements] == ["dfm", "angle"]


def test_a_scene_past_the_size_limit_is_one_diagnostic(monkeypatch, lark_calls):
    monkeypatch.setattr(dsl_parser, "MAX_SOURCE_LENGTH", 100)
    result = parse("dfm 1\n" + "zoom 1\n" * 50)
    assert [d.code for d in result.diagnostics] == ["DFM001"] and "at most 100" in result.diagnostics[0].message
    assert result.scene.statements == () and lark_calls == []


def test_parse_pauses_the_cyclic_collector_and_restores_it():
    import gc

    assert gc.isenabled()
    parse("dfm 1\nzoom 0:(1), 10:(2)\n")
    assert gc.isenabled()
    gc.disable()
    try:
        parse("zoom @")
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


# ---- the formatter never changes a string ---------------------------------------------------------


@pytest.mark.parametrize("value", [
    "\n  a\n b", "a\n  ", "a\r\nb", "lone\rcr", "nul\0", 'ends in a quote\n"', 'x"""\ny', "back\\\nslash",
    "tab\there\n", "\n", "", "trailing backslash\\", "\u2028\x85\x0c",
])
def test_strings_format_to_a_literal_that_reads_back(value):
    st = parse(f"prompt 0 {format_string(value)}\nzoom 1\n").scene.statements
    assert [s.name for s in st] == ["prompt", "zoom"]  # nothing after the string is swallowed
    assert st[0].args[1].value == value


def test_brute_force_string_round_trip():
    rng = random.Random(8)
    alphabet = ["a", " ", "\n", '"', "\\", "\t", "\r", "\0", '"""', "  ", "'"]
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        result = parse(f"prompt 0 {format_string(value)}")
        assert not result.diagnostics and result.scene.statements[0].args[1].value == value, repr(value)
