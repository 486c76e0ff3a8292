"""The Pygments lexer: every example lexes cleanly, statement boundaries agree with the parser,
and the main token kinds come out as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String

from dfm.dsl.lexer import FUNCTIONS, DfmLexer
from dfm.dsl.parser import parse

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.dfm"))

SAMPLE = '''\
# a sample scene
dfm 1
mode 2d
size 512x512
prompt 4s """
    a cat --neg dogs
    with \\"quotes\\" """
seed 42 iter 2
zoom 0: (0.65), 10:( 1e-3),   # a comment after a comma
  20:(where(t>5, 1, 0)) ease_in,
  8b:(2**3) cubic
angle sin(t/10)*pi + foo(2)
prompt_crossfade 0.5s
perspective_flip on
'''


def lex(text: str) -> list[tuple[object, str]]:
    """(token type, text) pairs without whitespace."""
    return [(tok, val) for tok, val in DfmLexer().get_tokens(text) if val.strip()]


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_lexes_without_errors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    tokens = list(DfmLexer().get_tokens(text))
    bad = [val for tok, val in tokens if tok in Error]
    assert bad == []
    # the lexer loses no text (Pygments adds one final newline at most)
    assert "".join(val for _, val in tokens).rstrip("\n") == text.rstrip("\n")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_statement_names_match_the_parser(path: Path) -> None:
    """The lexer's idea of where a statement starts agrees with dsl/parser.py on every example."""
    text = path.read_text(encoding="utf-8")
    lexed = [val for tok, val in lex(text) if tok is Name.Builtin or tok is Keyword.Declaration]
    parsed = [st.name for st in parse(text, str(path)).scene.statements]
    assert lexed == parsed


def test_sample_token_kinds() -> None:
    toks = lex(SAMPLE)
    kinds = dict((val, tok) for tok, val in toks)
    assert toks[0] == (Comment.Single, "# a sample scene")
    assert kinds["dfm"] is Keyword.Declaration
    for name in ("mode", "size", "prompt", "seed", "zoom", "angle", "prompt_crossfade", "perspective_flip"):
        assert kinds[name] is Name.Builtin, name
    assert kinds["2d"] is Name.Constant
    assert kinds["512x512"] in Number
    assert kinds["4s"] in Number and kinds["0.5s"] in Number
    assert kinds["0.65"] is Number.Float and kinds["1e-3"] is Number.Float
    assert kinds["42"] is Number.Integer
    assert kinds["iter"] is Name
    # keyframe times, in frames and beats, are labels followed by ':'
    for label in ("0", "10", "20", "8b"):
        assert (Name.Label, label) in toks, label
    assert kinds["ease_in"] is Keyword.Pseudo and kinds["cubic"] is Keyword.Pseudo
    assert kinds["where"] is Name.Function and kinds["sin"] is Name.Function
    assert kinds["foo"] is Name  # unknown functions are not builtins; the checker reports them
    assert kinds["t"] is Name.Variable and kinds["pi"] is Name.Constant
    assert kinds["**"] is Operator and kinds[">"] is Operator
    assert kinds["on"] is Keyword.Constant
    assert kinds["# a comment after a comma"] is Comment.Single
    assert (String.Interpol, "--neg") in toks
    assert [val for tok, val in toks if tok is String.Escape] == ['\\"', '\\"']


def test_continued_keyframes_stay_one_statement() -> None:
    # `20` and `8b` on continuation lines are keyframe labels, not statement names
    toks = lex(SAMPLE)
    names = [val for tok, val in toks if tok is Name.Builtin]
    assert names == ["mode", "size", "prompt", "seed", "zoom", "angle", "prompt_crossfade",
                     "perspective_flip"]


def test_name_inside_parentheses_over_lines_is_not_a_statement() -> None:
    toks = lex("zoom 0:(1 +\nsin(t))\nangle 1\n")
    assert (Name.Function, "sin") in toks
    assert [val for tok, val in toks if tok is Name.Builtin] == ["zoom", "angle"]


def test_a_comma_before_a_new_statement_ends_the_statement() -> None:
    # the next line starts at column 0 with a name: the parser starts a new statement there
    toks = lex("angle 0:(0), 10:(3),\nzoom 1.02\n")
    assert [val for tok, val in toks if tok is Name.Builtin] == ["angle", "zoom"]


def test_caret_is_an_error_token() -> None:
    toks = lex("zoom 2^3\n")
    assert (Error, "^") in toks


def test_string_contents_are_not_code() -> None:
    toks = lex('prompt "zoom # not a comment, sin(t)"\nnegative \'a\\tb\'\n')
    assert not any(tok in Comment for tok, _ in toks)
    assert not any(tok is Name.Function for tok, _ in toks)
    assert (String.Escape, "\\t") in toks


def test_unterminated_string_ends_at_the_line() -> None:
    toks = lex('prompt "abc\nzoom 1\n')
    assert (Name.Builtin, "zoom") in toks


def test_all_functions_are_highlighted() -> None:
    text = "zoom " + " + ".join(f"{f}(t)" for f in FUNCTIONS) + "\n"
    funcs = [val for tok, val in lex(text) if tok is Name.Function]
    assert funcs == list(FUNCTIONS)


def test_punctuation_in_keyframes() -> None:
    toks = lex("angle 0:(1), 10:(-3)\n")
    assert [tok for tok, _ in toks] == [
        Name.Builtin, Name.Label, Punctuation, Punctuation, Number.Integer, Punctuation, Punctuation,
        Name.Label, Punctuation, Punctuation, Operator, Number.Integer, Punctuation,
    ]


def test_registered_with_pygments() -> None:
    assert isinstance(get_lexer_by_name("dfm"), DfmLexer)
    assert isinstance(get_lexer_for_filename("scene.dfm"), DfmLexer)


def test_neg_marker_is_highlighted_only_where_the_compiler_splits() -> None:
    from dfm.compiler.lower import split_neg

    for text, splits in (("a --neg b", True), ("a --negative b", False)):
        toks = list(DfmLexer().get_tokens(f'prompt 0 "{text}"\n'))
        assert ((String.Interpol, "--neg") in toks) is splits
        assert (split_neg(text)[1] != "") is splits


def test_digits_and_dots_that_are_no_number_are_one_error_token() -> None:
    # one error per character would try every rule at every character: quadratic in the run
    toks = lex("zoom " + "1" * 50_000 + "..\n")
    assert toks[1] == (Error, "1" * 50_000 + "..") and len(toks) == 2


def test_digits_of_other_scripts_are_not_numbers() -> None:
    assert (Error, "٣") in lex("zoom ٣\n")  # as in the grammar, which reads ASCII digits only
