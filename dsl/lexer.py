"""A Pygments lexer for .dfm scene scripts (`pygmentize -l dfm scene.dfm`).

It is deliberately generic: it knows the shape of a statement (a name, then values or keyframes),
not the parameter catalogue, because the dsl stage must not import the compiler. So every
statement name is highlighted the same way, known or not; `dfm check` is what says it is unknown.

Statements follow the parser's logical-line rule (dsl/parser.py): a statement continues after a
trailing comma, inside parentheses and inside a triple-quoted string; any other newline ends it.
The lexer mirrors that with states, so a keyframe list split over several lines stays one statement
and the first name on the next real statement is again a statement name.
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, default, include, words
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

# The expression functions of the language (docs/language.md, "Functions"). Kept here as a plain
# tuple rather than read from the compiler: an unknown function is still lexed, just not as a builtin.
FUNCTIONS: tuple[str, ...] = (
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
    "arcsinh", "arccosh", "arctanh", "exp", "expm1", "log", "log10", "log1p", "sqrt", "abs",
    "where", "floor", "ceil", "round", "min", "max", "clamp",
)
VARIABLES: tuple[str, ...] = ("t", "max_f", "max_frames", "fps", "bpm", "s")
CONSTANTS: tuple[str, ...] = ("pi", "e")
CURVES: tuple[str, ...] = ("linear", "step", "ease_in", "ease_out", "ease_in_out", "cubic")
BOOLEANS: tuple[str, ...] = ("on", "off")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Numbers as the grammar's NUMBER terminal: `1`, `1.`, `.5`, `1e-3`; never glued to a letter. Digits
# are ASCII, as in the grammar (`\d` would take any script's digits).
_D = "[0-9]"
_FLOAT = rf"(?:{_D}+\.{_D}*|\.{_D}+)(?:[eE][+-]?{_D}+)?(?![A-Za-z0-9_.])|{_D}+[eE][+-]?{_D}+(?![A-Za-z0-9_.])"
_INT = rf"{_D}+(?![A-Za-z0-9_.])"
_TIME = rf"(?:{_D}+\.{_D}+|{_D}+|\.{_D}+)[sb](?![A-Za-z0-9_.])"
# A statement goes on after a comma when the next line starts like a continuation (indented, or a
# digit, a dot or a parenthesis), or is blank or a comment: the parser's rule, approximately.
_CONTINUES = r"(?=[ \t0-9.(),#\r\n])"


class DfmLexer(RegexLexer):
    """Lexer for dfm scene scripts (`.dfm`)."""

    name = "dfm"
    aliases: ClassVar[list[str]] = ["dfm"]
    filenames: ClassVar[list[str]] = ["*.dfm"]
    mimetypes: ClassVar[list[str]] = ["text/x-dfm"]
    url = "docs/language.md"

    tokens: ClassVar[dict] = {
        "root": [
            (r"[ \t\f\r\n]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            # the version line is the one statement that is not a parameter
            (r"(dfm)\b", Keyword.Declaration, "statement"),
            (_NAME, Name.Builtin, "statement"),
            # a stray continuation line (a keyframe on a line of its own): lex it as values
            default("statement"),
        ],
        "statement": [
            (
                r"(,)([ \t]*)(#[^\n]*)?(\n)" + _CONTINUES,
                bygroups(Punctuation, Whitespace, Comment.Single, Whitespace),
            ),
            (r"\n", Whitespace, "#pop"),
            (r"#[^\n]*", Comment.Single),
            (r"\(", Punctuation, "paren"),
            include("value"),
        ],
        "paren": [
            (r"\n", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r"\(", Punctuation, "#push"),
            (r"\)", Punctuation, "#pop"),
            include("value"),
        ],
        "value": [
            (r"[ \t\f\r]+", Whitespace),
            (r'"""', String.Double, "triple"),
            (r'"', String.Double, "double"),
            (r"'", String.Single, "single"),
            # a keyframe's time, in frames, seconds or beats: `10:`, `4s:`, `8b :`
            (rf"((?:{_D}+\.{_D}+|{_D}+|\.{_D}+)[sb]?)([ \t]*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),
            (rf"{_D}+[xX]{_D}+(?![A-Za-z0-9_.])", Number),  # a size, 512x512
            (_TIME, Number),  # 4s, 0.5s, 8b
            (_FLOAT, Number.Float),
            (_INT, Number.Integer),
            (rf"{_D}+[A-Za-z_][A-Za-z0-9_]*", Name.Constant),  # a word starting with a digit: 2d, 3d
            # digits and dots that are no number (`1..5`, `1.2.3`): one error token for the whole run. Without
            # it each character would be an error of its own, every one tried against the rules above, each
            # of which reads the rest of the run: quadratic in its length.
            (r"[0-9.]+", Error),
            # the native composable prompt: `weight` right after a string, `and` right before one
            (r"""(?:(?<=" )|(?<=' )|(?<="\t)|(?<='\t))weight\b""", Keyword),
            (r"""\band\b(?=[ \t]*["'])""", Keyword),
            (words(FUNCTIONS, suffix=r"(?=[ \t]*\()"), Name.Function),
            (_NAME + r"(?=[ \t]*\()", Name),  # a call to a function dfm does not know: the checker says so
            (words(CONSTANTS, prefix=r"\b", suffix=r"\b"), Name.Constant),
            (words(VARIABLES, prefix=r"\b", suffix=r"\b"), Name.Variable),
            (words(CURVES, prefix=r"\b", suffix=r"\b"), Keyword.Pseudo),
            (words(BOOLEANS, prefix=r"\b", suffix=r"\b"), Keyword.Constant),
            (_NAME, Name),
            (r"\*\*|==|!=|<=|>=|[-+*/%<>&|~]", Operator),
            # `^` is not an operator in dfm (powers are `**`): show it as the mistake it is
            (r"\^", Error),
            (r"[,:]", Punctuation),
        ],
        "triple": [
            (r'"""', String.Double, "#pop"),
            include("escapes"),
            (r'[^"\\-]+', String.Double),
            (r'["\\-]', String.Double),  # a lone quote, a dash, a backslash before a newline
        ],
        "double": [
            (r'"', String.Double, "#pop"),
            include("escapes"),
            (r'[^"\\\n-]+', String.Double),
            (r"-", String.Double),
            default("#pop"),  # unterminated at the newline: the statement ends there (DFM002)
        ],
        "single": [
            (r"'", String.Single, "#pop"),
            include("escapes"),
            (r"[^'\\\n-]+", String.Single),
            (r"-", String.Single),
            default("#pop"),
        ],
        "escapes": [
            (r"\\.", String.Escape),
            # Deforum's convention: `--neg` splits a prompt into its positive and negative parts
            (r"--neg(?![A-Za-z0-9_])", String.Interpol),  # the marker lower.split_neg splits on
        ],
    }
