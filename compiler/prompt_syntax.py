"""A1111's prompt syntax, read once by the compiler: attention weights as pieces, and what dfm lacks.

A prompt's text stays in the FrameTable as the user wrote it; next to it the table carries the pieces
the runtime encodes (`pieces_json`): JSON, a list of ``[text, weight]`` pairs and ``"BREAK"`` markers,
so the runtime never reads the syntax itself.

`pieces` is A1111's ``parse_prompt_attention`` (modules/prompt_parser.py), the "original" emphasis:

- ``(text)`` multiplies the weight of everything inside by 1.1, ``[text]`` divides it by 1.1, and
  ``(text:1.3)`` multiplies it by 1.3; groups nest and their factors multiply
  (``((a))`` is 1.21).
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are the characters themselves; a lone backslash is
  dropped, as in A1111 (a warning, DFM501).
- A ``(`` or ``[`` never closed weighs everything after it (A1111 closes it at the end); a ``)`` or
  ``]`` that closes nothing is literal text. `check` warns about both (DFM501).
- ``BREAK`` (a word of its own, in capitals) ends the current 75-token chunk. Unlike A1111, a BREAK
  inside brackets still breaks (A1111 multiplies its marker's weight there and then encodes the word
  "BREAK" as text).
- Neighbouring pieces of equal weight merge into one (A1111 tokenizes each piece on its own).

Extra-network tags (``<lora:name:0.8>``, ``<hypernet:…>``) are removed from the text CLIP sees, as
A1111 removes them; dfm does not load the network, and `check` says so (DFM502). Composable prompts
(``AND``), prompt editing (``[a:b:0.5]``), alternation (``[a|b]``) and Deforum's backtick expressions
are not implemented: `check` warns (DFM502) and their characters are encoded as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

ROUND = 1.1  # ( )
SQUARE = 1 / 1.1  # [ ]
BREAK = "BREAK"  # the chunk-break marker in a pieces list

# A1111's tokens of the attention syntax, in its order (the first alternative that matches wins)
_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")  # A1111's re_extra_net
_AND = re.compile(r"\bAND\b")  # A1111's composable-prompt separator
_BACKTICKS = re.compile(r"`[^`]*`")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")  # lark's SIGNED_NUMBER

Piece = tuple[str, float]


@dataclass(frozen=True)
class Issue:
    """A problem in one prompt text: offsets into that text (end exclusive)."""

    code: str  # DFM501 (attention syntax) or DFM502 (syntax dfm does not implement)
    error: bool
    message: str
    start: int
    end: int
    help: str


def pieces(text: str) -> list[Piece | str]:
    """The text as A1111 weighs it: ``[(text, weight), …]`` with ``"BREAK"`` between chunks."""
    return _attention(_EXTRA_NETWORK.sub("", text))[0]


def pieces_json(text: str) -> str:
    """The table's ``*_pieces`` value for a prompt text: its pieces as compact JSON."""
    out = [p if p == BREAK else [p[0], p[1]] for p in pieces(text)]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def check(text: str) -> list[Issue]:
    """Every problem `text` has as a prompt, in order of position."""
    issues = _attention(text)[1] + _unsupported(text)
    return sorted(issues, key=lambda i: (i.start, i.code))


def _attention(text: str) -> tuple[list[Piece | str], list[Issue]]:
    res: list[list | str] = []  # [text, weight] lists and BREAK markers
    issues: list[Issue] = []
    round_open: list[tuple[int, int]] = []  # (first piece inside, offset of the bracket)
    square_open: list[tuple[int, int]] = []

    def multiply(start: int, factor: float) -> None:
        for p in res[start:]:
            if p != BREAK:
                p[1] *= factor

    for m in _ATTENTION.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
            if tok == "\\":
                issues.append(Issue("DFM501", False, "a lone `\\` is dropped, as A1111 drops it", m.start(), m.end(),
                                    "remove it: a backslash marks a literal ( ) [ ] or \\ only"))
        elif tok == "(":
            round_open.append((len(res), m.start()))
        elif tok == "[":
            square_open.append((len(res), m.start()))
        elif weight is not None and round_open and _is_float(weight):
            multiply(round_open.pop()[0], float(weight))
        elif tok == ")" and round_open:
            multiply(round_open.pop()[0], ROUND)
        elif tok == "]" and square_open:
            multiply(square_open.pop()[0], SQUARE)
        else:
            if weight is not None and round_open:  # A1111 fails here (float() of the text)
                round_open.pop()  # closed: one error, not a second one for the bracket
                issues.append(Issue("DFM501", True, f"`{weight}` is not a weight", m.start(1), m.end(1),
                                    "write a number such as `(word:1.2)`"))
            elif tok in (")", "]") or weight is not None:
                opener = "(" if tok[-1] == ")" else "["
                issues.append(Issue("DFM501", False, f"`{tok[-1]}` closes no `{opener}`: it is encoded as text",
                                    m.end() - 1, m.end(), f"remove it, or write `\\{tok[-1]}` for the character"))
            for i, part in enumerate(_BREAK.split(tok)):
                if i:
                    res.append(BREAK)
                res.append([part, 1.0])
    for opened, what, factor in ((round_open, "(", ROUND), (square_open, "[", SQUARE)):
        for start, at in opened:
            multiply(start, factor)
            issues.append(Issue("DFM501", False, f"`{what}` is never closed: it weighs everything after it "
                                f"(×{factor:.4g}), as A1111 reads it", at, at + 1,
                                f"close it with `{')' if what == '(' else ']'}`, or write `\\{what}` for the "
                                "character"))
    return _merged(res), issues


def _merged(res: list[list | str]) -> list[Piece | str]:
    """Neighbouring pieces of equal weight as one (A1111's merge); then the empty ones dropped."""
    out: list[list | str] = []
    for p in res:
        if p != BREAK and out and out[-1] != BREAK and out[-1][1] == p[1]:
            out[-1][0] += p[0]
        else:
            out.append(p if p == BREAK else list(p))
    kept = [p if p == BREAK else (p[0], p[1]) for p in out if p == BREAK or p[0]]
    return kept or [("", 1.0)]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _unsupported(text: str) -> list[Issue]:
    out = []
    for m in _EXTRA_NETWORK.finditer(text):
        kind = m.group(1)
        out.append(Issue("DFM502", False, f"`<{kind}:…>` is not implemented: the tag is left out of the prompt "
                         f"and dfm renders without the {'LoRA' if kind in ('lora', 'lyco') else kind}",
                         m.start(), m.end(), "remove the tag (dfm does not load extra networks yet)"))
    for m in _AND.finditer(text):
        out.append(Issue("DFM502", False, "composable prompts (`AND`) are not implemented: the whole text, `AND` "
                         "included, is encoded as one prompt", m.start(), m.end(),
                         "write one prompt, or blend prompts over time with `prompt_crossfade`"))
    for m in _BACKTICKS.finditer(text):
        out.append(Issue("DFM502", False, "Deforum's backtick expressions are not evaluated: the text between the "
                         "backticks is encoded as written", m.start(), m.end(),
                         "write the weight as a number, e.g. `(cat:1.2)`"))
    out += _editing(text)
    return out


def _editing(text: str) -> list[Issue]:
    """A1111's prompt editing `[a:b:when]` (also `[a:when]`, `[a::when]`) and alternation `[a|b]`."""
    out = []
    stack: list[list] = []  # per open bracket: [kind, offset, offset of the last ':' at its level, saw '|']
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "([":
            stack.append([c, i, -1, False])
        elif c in ")]" and stack and stack[-1][0] == ("(" if c == ")" else "["):
            kind, start, colon, pipe = stack.pop()
            if kind == "[" and pipe:
                out.append(Issue("DFM502", False, "alternation `[a|b]` is not implemented: the text inside is "
                                 "encoded as written, `|` included", start, i + 1,
                                 "write one of the alternatives"))
            elif kind == "[" and colon >= 0 and _NUMBER.fullmatch(text[colon + 1:i].strip()):
                out.append(Issue("DFM502", False, "prompt editing `[from:to:when]` is not implemented: the text "
                                 "inside is encoded as written, colons included", start, i + 1,
                                 "write the text of one part, or key a new prompt at the frame it should change"))
        elif c == ":" and stack:
            stack[-1][2] = i
        elif c == "|" and stack:
            stack[-1][3] = True
        i += 1
    return out


__all__ = ["BREAK", "Issue", "check", "pieces", "pieces_json"]
