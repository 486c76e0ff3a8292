"""Issue 21 §1: hostile prompts and expressions cost linear work. A prompt of 20,000 unclosed `(` maps its
string once (not once per DFM501 finding), a run of 20,000 spaces splits at BREAK without the regex
retrying from every space, and a long flat sum `1+0+…` is a chain, not 300 levels of nesting."""

from __future__ import annotations

import functools
import random
import re

import pytest

from dfm.api import compile_result
from dfm.compiler import prompt_syntax, string_spans
from dfm.dsl import parser as dsl_parser

N = 20_000


def test_20000_unclosed_brackets_map_the_string_once(monkeypatch):
    calls = []
    real = string_spans.value_offsets
    monkeypatch.setattr(string_spans, "value_offsets", lambda body, value: calls.append(1) or real(body, value))
    string_spans._mapping.cache_clear()
    head = '\\"x'  # an escape (two source characters for one), so the mapping is not the identity
    source = f'dfm 1\nframes 5\nprompt 0 "{head}' + "(" * N + 'a"\n'
    r = compile_result(source, "<s>")
    found = [d for d in r.diagnostics if d.code == "DFM501"]
    assert len(found) == N and all("never closed" in d.message for d in found)
    quote = source.index('"')
    # the k-th `(` is value character 2 + k, source character 3 + k after the opening quote
    assert sorted((d.span.start, d.span.end) for d in found) == [
        (quote + 1 + 3 + k, quote + 1 + 4 + k) for k in range(N)]
    assert all(d.span.col == d.span.start - source.rindex("\n", 0, d.span.start) for d in found[:50])
    assert len(calls) == 1  # once for the string, not once per finding


def test_a_string_span_is_unchanged_by_the_cache():
    source = 'prompt 0 "a\\n(b"\n'
    r = compile_result("dfm 1\n" + source, "<s>")
    (d,) = [d for d in r.diagnostics if d.code == "DFM501"]
    assert (d.span.col, d.span.end_col) == (14, 15)  # the `(` after the two-character escape `\n`


OLD_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)  # the split before: quadratic in a run of spaces

NORMAL = ["a cat BREAK a dog", "a BREAK", "BREAK b", "BREAK BREAK", "a\tBREAK\nb", "aBREAK b", "a BREAKb",
          "a_BREAK b", "é BREAK é", "a  BREAK  BREAK  b", "Break break", "a,BREAK,b", "a\u3000BREAK\u3000b", ""]


@pytest.mark.parametrize("text", NORMAL)
def test_the_break_split_gives_the_same_pieces_as_before(text):
    assert prompt_syntax._break_split(text) == OLD_BREAK.split(text)


def test_the_break_split_agrees_on_random_text():
    alphabet = ["BREAK", " ", "\u3000", "\n", "a", "_", "é", "\t", ",", "\x1c", "\x85", "1"]
    rng = random.Random(21)
    for _ in range(20_000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        assert prompt_syntax._break_split(s) == OLD_BREAK.split(s), repr(s)


class _Counting:
    """A compiled pattern whose calls are counted."""

    def __init__(self, pattern: re.Pattern, calls: list):
        self.pattern, self.calls = pattern, calls

    def __getattr__(self, name):
        @functools.wraps(getattr(self.pattern, name))
        def call(*args, **kwargs):
            self.calls.append(name)
            return getattr(self.pattern, name)(*args, **kwargs)
        return call


def test_the_break_split_of_20000_spaces_is_one_scan(monkeypatch):
    """Linear by construction: one `finditer` of `\\bBREAK\\b` (no leading repeat to retry from every
    space), then one anchored `\\s*` match after each BREAK; the spaces before it go by `rstrip`."""
    calls: list = []
    monkeypatch.setattr(prompt_syntax, "_BREAK_WORD", _Counting(prompt_syntax._BREAK_WORD, calls))
    monkeypatch.setattr(prompt_syntax, "_SPACES", _Counting(prompt_syntax._SPACES, calls))
    text = "a" + " " * N + "b BREAK" + " " * N + "c" + " " * N
    assert prompt_syntax.pieces(text) == [("a" + " " * N + "b", 1.0), "BREAK", ("c" + " " * N, 1.0)]
    assert calls == ["finditer", "match"]
    assert not re.match(r"\\s|\(", prompt_syntax._BREAK_WORD.pattern.pattern)


def test_a_prompt_with_20000_spaces_checks_clean():
    r = compile_result('dfm 1\nframes 5\nprompt 0 "a' + " " * N + 'b BREAK c"\n', "<s>")
    assert not r.errors and r.table is not None


def _zoom(expr: str):
    return compile_result(f'dfm 1\nframes 3\nprompt 0 "a"\nzoom {expr}\n', "<s>")


def test_a_300_term_flat_sum_is_accepted_and_evaluates_left_to_right():
    r = _zoom("+".join(["1"] + ["0.001"] * 299))
    assert not r.errors, r.errors
    want = functools.reduce(lambda a, b: a + b, [1.0] + [0.001] * 299)  # left-associative, as written
    assert list(r.table.columns["zoom"]) == [want] * 3


def test_a_long_chain_of_mixed_operators_is_flat_too():
    r = _zoom("*".join(["1.001"] * 150) + "-" + "-".join(["0.0001"] * 150))
    assert not r.errors, r.errors


@pytest.mark.parametrize("expr", [
    "1+(" * 201 + "1" + ")" * 201,  # nested on the right
    "sin(" * 201 + "1" + ")" * 201,  # calls
    "-" * 210 + "1",
    "(" * 201 + "1" + ")**2" * 201,  # parenthesised on the left of a power
])
def test_a_deeply_nested_expression_is_still_refused(expr):
    r = _zoom(expr)
    assert [d.code for d in r.errors] == ["DFM001"] and "nested more than 200 levels" in r.errors[0].message


def test_a_chain_past_the_height_limit_is_a_diagnostic_not_a_recursion_error():
    n = dsl_parser.MAX_EXPR_HEIGHT + 10
    r = _zoom("+".join(["1"] * n))
    (d,) = r.errors
    assert d.code == "DFM001" and f"{dsl_parser.MAX_EXPR_HEIGHT} operations deep" in d.message and d.help


def test_brackets_never_closed_weigh_as_one_multiplication_each():
    """The close-out of unclosed brackets gives each piece its count of them at once (3,000 unclosed brackets
    before 3,000 prompt edits took 9 s); the weights are the bits of one multiplication per bracket, in
    A1111's order: every `(` then every `[`."""
    import random

    from dfm.compiler import prompt_syntax as ps

    rng = random.Random(7)
    for _ in range(300):
        opens = rng.choice(["(", "["]) * rng.randint(1, 40)
        words = " ".join(rng.choice(["a", "(b:1.3)", "[c]", "BREAK"]) for _ in range(rng.randint(1, 8)))
        got = ps._attention(opens + words)[0]
        rounds, squares = opens.count("("), opens.count("[")
        want = []
        for p in ps._attention(words)[0]:
            if p == ps.BREAK:
                want.append(p)
                continue
            w = p[1]
            for _ in range(rounds):
                w *= ps.ROUND
            for _ in range(squares):
                w *= ps.SQUARE
            want.append((p[0], w))
        assert [p if p == ps.BREAK else (p[0], p[1]) for p in got] == want


def test_brackets_closed_far_away_stay_linear_and_past_100_deep_are_an_error():
    import time

    from dfm.api import check_text
    from dfm.compiler.prompt_syntax import MAX_ATTENTION_DEPTH

    ok = "(" * MAX_ATTENTION_DEPTH + "cat" + ")" * MAX_ATTENTION_DEPTH
    assert not [d for d in check_text(f'dfm 1\nprompt "{ok}"\n') if d.is_error]
    deep = "(a " * 40_000 + "cat" + " b)" * 40_000
    start = time.perf_counter()
    errors = [d for d in check_text(f'dfm 1\nprompt "{deep}"\n') if d.is_error]
    assert time.perf_counter() - start < 30  # a hang guard: quadratic before (80 s), about 2 s now
    assert errors and errors[0].code == "DFM501" and "nested more than 100 deep" in errors[0].message
