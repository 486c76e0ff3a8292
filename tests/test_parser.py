"""The grammar and parser: statements, values, spans, and every syntax error class."""

import pytest

from dfm.dsl import ir
from dfm.dsl.parser import parse, split_statements


def one(text: str) -> ir.Statement:
    r = parse(text)
    assert not r.diagnostics, r.diagnostics
    assert len(r.scene.statements) == 1
    return r.scene.statements[0]


def codes(text: str) -> list[str]:
    return [d.code for d in parse(text).diagnostics]


def test_settings_values():
    assert one("mode 2d").args == (ir.Word("2d"),)
    assert one("size 512x768").args == (ir.Size(512, 768),)
    assert one("duration 10s").args == (ir.Time(10.0, "s", "10s"),)
    assert one('model "a/b" sha256 "ff"').args == (ir.String("a/b"), ir.Variable("sha256"), ir.String("ff"))
    assert one("seed 42 iter 2").args == (ir.Number(42, "42"), ir.Variable("iter"), ir.Number(2, "2"))


def test_deforum_schedule_strings_parse_unchanged():
    for text in ["0:(1), 10:(-3)", "0: (0.65)", "0:(where(t>5, 1, 0))", "0:( 1)", "0:(1),10:(2)",
                 "0:(1),  6:(2)", "0:(1.0025+0.002*sin(1.25*3.14*t/30))", "0:(t%15)", "04:(1)"]:
        st = one(f"zoom {text}")
        assert isinstance(st.args[0], ir.KeyList), text


def test_keys_split_over_lines_and_trailing_comma():
    st = one("angle 0:(1),\n      10:(-3),\n      20:(0),\n")
    keys = st.args[0].keys
    assert [k.at.value for k in keys] == [0, 10, 20]
    assert st.args[0].trailing_comma


def test_key_times_and_curves():
    st = one("translation_x 0:(0), 4s:(3) ease_in_out, 8b:(0) step")
    ks = st.args[0].keys
    assert [(k.at.value, k.at.unit, k.curve) for k in ks] == [(0, "f", None), (4, "s", "ease_in_out"),
                                                             (8, "b", "step")]


def test_left_associative_and_power_right_associative():
    e = one("x 10 - 5 - 2").args[0]
    assert e == ir.Binary("-", ir.Binary("-", ir.Number(10, "10"), ir.Number(5, "5")), ir.Number(2, "2"))
    p = one("x 2**3**2").args[0]
    assert p == ir.Binary("**", ir.Number(2, "2"), ir.Binary("**", ir.Number(3, "3"), ir.Number(2, "2")))
    neg = one("x -2**2").args[0]
    assert isinstance(neg, ir.Unary) and isinstance(neg.operand, ir.Binary)


def test_number_text_is_kept():
    assert one("zoom 0:(1e-3)").args[0].keys[0].value == ir.Number(0.001, "1e-3")
    assert one("zoom 0:(.5)").args[0].keys[0].value.text == ".5"


def test_strings_escapes_and_multiline():
    assert one(r'prompt 0 "a \"cat\"\n"').args[1].value == 'a "cat"\n'
    st = one('prompt 0 """\n    first line\n    second\n"""')
    assert st.args[1].value == "first line\nsecond"


def test_spans_are_one_based_and_not_compared():
    r = parse("dfm 1\n  zoom 0:(1.04)\n")
    st = r.scene.statements[1]
    assert (st.span.line, st.span.col) == (2, 3)
    assert (st.name_span.line, st.name_span.col, st.name_span.end_col) == (2, 3, 7)
    key = st.args[0].keys[0]
    assert (key.value.span.line, key.value.span.col) == (2, 11)
    assert parse("zoom   0:(1.04)").scene == parse("zoom 0:(1.04)").scene


def test_comments_are_collected():
    r = parse("# head\nzoom 1  # tail\n")
    assert [(c.text, c.trailing) for c in r.scene.comments] == [("# head", False), ("# tail", True)]


@pytest.mark.parametrize("text,code,col", [
    ("zoom 0:(1,04)", "DFM011", 9),
    ("cfg_scale 7,5", "DFM011", 11),
    ("zoom 0:(1,5), 10:(2)", "DFM011", 9),
    ("zoom 0:(1) 10:(2)", "DFM012", 12),
    ("zoom 0:(1)\n10:(2)", "DFM012", 1),
    ("zoom 0:(1", "DFM003", 8),
    ("x 2^3", "DFM013", 4),
    ('prompt 0 "open', "DFM002", 10),
    ("zoom 0: 1.04", "DFM014", 9),
    ("zoom 0:(1 +)", "DFM001", 12),
    ("zoom @", "DFM001", 6),
])
def test_syntax_errors(text, code, col):
    r = parse(text, "s.dfm")
    assert [d.code for d in r.diagnostics] == [code]
    d = r.diagnostics[0]
    assert d.span.col == col, d
    assert d.help and d.path == "s.dfm"


def test_decimal_comma_message_names_the_number_and_fix():
    d = parse("zoom 0:(1,04)").diagnostics[0]
    assert "1,04" in d.message and d.help == "use a dot: 1.04"


def test_commas_in_calls_and_between_keys_are_not_decimal_commas():
    assert codes("x 0:(where(t>5,1,0)), 10:(min(1,5))") == []
    assert codes("x 0:(1),10:(2)") == []


def test_syntax_error_says_what_was_expected():
    d = parse("zoom 0:(1 +)").diagnostics[0]
    assert "expected" in (d.note or "") and "a number" in d.note


def test_every_error_in_a_file_is_reported():
    r = parse("zoom 0:(1,04)\nangle 0:(1\nfine 1\ncfg 7,5\n")
    assert [d.code for d in r.diagnostics] == ["DFM011", "DFM003", "DFM011"]
    assert [st.name for st in r.scene.statements] == ["fine"]


def test_split_statements_keeps_unclosed_paren_to_its_line():
    ranges, _ = split_statements("zoom 0:(1\nangle 2\n")
    assert len(ranges) == 2


def test_parse_never_raises_on_garbage():
    for text in ["", "\n\n", "(((", ")", '"""', "0:(1)", "dfm", "\x00", "zoom 0:(" * 50]:
        parse(text)


def test_too_deep_expressions_are_an_error_not_a_crash():
    r = parse("zoom " + "+".join(["1"] * 3000))
    assert [d.code for d in r.diagnostics] == ["DFM001"] and "nested" in r.diagnostics[0].message


def test_long_lines_are_shown_around_the_spot():
    from dfm.dsl.diagnostics import render_full

    text = "zoom " + "+".join(["1"] * 150) + " + 1,5"
    d = parse(text).diagnostics[0]
    shown = render_full(d, text).splitlines()
    caret_line = next(line for line in shown if "^" in line)
    source_line = shown[shown.index(caret_line) - 1]
    assert len(source_line) < 110
    assert source_line[caret_line.index("^"):].startswith("1,5")


# ---- linear on long lines (issue 8): the right result, whatever the length ------------------------


def test_a_long_run_of_blanks_after_a_comma_is_no_trailing_comma():
    # the trailing-comma look-ahead once backtracked over every blank, for every blank: quadratic
    st = one("zoom 0:(1)," + " \t\f" * 70_000 + "10:(2)")
    assert [k.at.value for k in st.args[0].keys] == [0, 10] and not st.args[0].trailing_comma
    st = one("zoom 0:(1), 10:(2)," + " " * 200_000 + "# the end")
    assert st.args[0].trailing_comma


def test_a_long_run_of_digits_before_a_comma():
    # the decimal-comma hint once searched for `[0-9.]+$` from every start: quadratic
    (d,) = parse("seed " + "1" * 200_000 + " ,5").diagnostics
    assert d.code == "DFM001" and d.message == "unexpected token ','" and d.span.col == 200_007
    (d,) = parse("seed " + "1" * 200_000 + ",5").diagnostics  # too long to be a decimal comma: no 200 KB hint
    assert d.code == "DFM001" and len(d.message) < 100 and len(d.help) < 100
    assert parse("zoom 0:(1" + "0" * 50 + ",5)").diagnostics[0].code == "DFM011"  # a long decimal still is one


def test_many_blank_lines_between_keys():
    # each blank line once looked ahead over all the blank lines after it: quadratic
    r = parse("zoom 0:(1)," + "\n" * 100_000 + "  10:(2)\nangle 1\n")
    assert not r.diagnostics
    zoom, angle = r.scene.statements
    assert [k.at.value for k in zoom.args[0].keys] == [0, 10] and zoom.span.end_line == 100_001
    assert angle.span.line == 100_002


def test_blank_and_comment_lines_then_a_new_statement_end_the_keys():
    r = parse("zoom 0:(1),\n\n# a comment\n\nangle 1\n  \nstrength 0:(1),\n\n  # c\n  5:(2)\n")
    assert not r.diagnostics
    zoom, angle, strength = r.scene.statements  # `angle` at column 0 starts a statement: zoom's comma trails
    assert zoom.args[0].trailing_comma and (zoom.span.line, zoom.span.end_line) == (1, 1)
    assert angle.span.line == 5 and len(strength.args[0].keys) == 2 and strength.span.end_line == 10


def test_a_long_token_is_not_quoted_whole_in_a_message():
    big = '"' + "a" * 100_000 + '"'
    for text in (f"zoom 0: {big}", f"zoom 1 + {big}", f"{big} 1"):
        (d,) = parse(text).diagnostics
        assert len(d.message) < 200 and len(d.help or "") < 200 and len(d.note or "") < 300, d


def test_strings_end_where_the_grammar_ends_them():
    # an escaped backslash before the closing quotes, a backslash before a newline
    r = parse('prompt 0 """a\n\\\\"""\nzoom 1\n')
    assert not r.diagnostics and [st.name for st in r.scene.statements] == ["prompt", "zoom"]
    r = parse('prompt 0 "a\\\nzoom 1\n')
    assert [d.code for d in r.diagnostics] == ["DFM002"] and [st.name for st in r.scene.statements] == ["zoom"]


@pytest.mark.parametrize("text", ["\x00", "\ud800", "\ufeff\ufeff", "\r\r\r", "zoom 0:(\x00)", "\x1b[2J",
                                  "zoom\u2028 1", "zoom 1\x85", "zoom 1e99999999999999", '"""\\'])
def test_parse_never_raises_on_strange_characters(text):
    r = parse(text)
    assert all(d.help for d in r.diagnostics)
