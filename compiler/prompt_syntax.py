"""A1111's prompt syntax, read once by the compiler: attention weights, AND, prompt editing, backticks.

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
  "BREAK" as text): `check` warns at it (DFM501), so the difference is never silent.
- Neighbouring pieces of equal weight merge into one (A1111 tokenizes each piece on its own).

Extra-network tags (``<lora:name:0.8>``, ``<hypernet:…>``) are removed from the text CLIP sees, as
A1111 removes them. ``<lora:…>`` and ``<lyco:…>`` are loaded (compiler/networks.py reads them and checks
their files); any other kind is not, and `check` says so (DFM502).

What a positive prompt means per frame and per sampler step (`table_pieces`, docs/frametable.md has the
JSON forms):

- Deforum's backtick expressions (`` `cos(t)` ``) are dfm expressions the compiler evaluates per frame;
  the number replaces the backticks before anything else reads the text (`substitute`), as Deforum does.
- ``AND`` splits a positive prompt into A1111's composable sub-prompts, each with an optional trailing
  ``:weight`` (`split_and`, A1111's ``get_multicond_prompt_list``). Negatives are never split (A1111 has no
  ``AND`` there: the word is text).
- Each sub-prompt's prompt editing ``[from:to:when]`` / ``[to:when]`` / ``[from::when]`` and alternation
  ``[a|b]`` make a schedule over the sampler steps (`schedule`, A1111's
  ``get_learned_conditioning_prompt_schedules`` without hires fix): ``when`` with a ``.`` is a fraction of
  the steps, else a step; ``min(steps, int(v))``.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..dsl import ir
from ..dsl.parser import parse_statement

ROUND = 1.1  # ( )
# brackets closed inside more than this many open ones: an error (the weight would be 1.1^100 ≈ 13,781 or
# more, far past meaning), and the check stays linear — each close multiplies every piece inside it, so a
# piece is multiplied once per enclosing closed bracket
MAX_ATTENTION_DEPTH = 100
SQUARE = 1 / 1.1  # [ ]
BREAK = "BREAK"  # the chunk-break marker in a pieces list

# A1111's tokens of the attention syntax, in its order (the first alternative that matches wins)
_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""", re.X)
_BREAK_WORD = re.compile(r"\bBREAK\b")
_SPACES = re.compile(r"\s*")
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")  # A1111's re_extra_net
LOADED_NETWORKS = ("lora", "lyco")  # the extra-network kinds dfm loads (compiler/networks.py)
AND = re.compile(r"\bAND\b")  # A1111's composable-prompt separator
_BACKTICKS = re.compile(r"`[^`]*`")

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
    # a backtick expression is a number by the time A1111 reads the text: check the text with each one
    # as a number of the same length, so that `cos(t)` is no bracket pair and offsets stay offsets
    plain = _numbers_for_backticks(text) if "`" in text else text
    issues = _attention(plain)[1] + _unsupported(text)
    return sorted(issues, key=lambda i: (i.start, i.code))


def _numbers_for_backticks(text: str) -> str:
    out, last = [], 0
    for start, end, _ in backticks(text):
        out += [text[last:start], "1" + " " * (end - start - 1)]
        last = end
    return "".join(out) + text[last:]


def _attention(text: str) -> tuple[list[Piece | str], list[Issue]]:
    res: list[list | str] = []  # [text, weight] lists and BREAK markers
    issues: list[Issue] = []
    round_open: list[tuple[int, int]] = []  # (first piece inside, offset of the bracket)
    square_open: list[tuple[int, int]] = []

    too_deep: list[int] = []  # where the first bracket past MAX_ATTENTION_DEPTH closed

    def multiply(start: int, factor: float) -> None:
        if len(round_open) + len(square_open) >= MAX_ATTENTION_DEPTH:  # the one just popped counted too
            if not too_deep:
                too_deep.append(m.start())
            return
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
            if round_open or square_open:  # dfm breaks the chunk here too; say where A1111 would not
                for b in _BREAK_WORD.finditer(tok):
                    issues.append(Issue(
                        "DFM501", False, "`BREAK` inside brackets starts a new chunk in dfm; A1111 encodes the word "
                        "BREAK as text there (only a BREAK outside every bracket breaks)", m.start() + b.start(),
                        m.start() + b.end(), "move BREAK outside the brackets, or write `break` for the word"))
            for i, part in enumerate(_break_split(tok)):
                if i:
                    res.append(BREAK)
                res.append([part, 1.0])
    if too_deep:
        issues.append(Issue("DFM501", True, f"brackets nested more than {MAX_ATTENTION_DEPTH} deep", too_deep[0],
                            too_deep[0] + 1, "use an explicit weight, `(word:1.5)`, instead of many brackets"))
    _close_at_end(res, [start for start, _ in round_open], [start for start, _ in square_open])
    for opened, what, factor in ((round_open, "(", ROUND), (square_open, "[", SQUARE)):
        for _, at in opened:
            issues.append(Issue("DFM501", False, f"`{what}` is never closed: it weighs everything after it "
                                f"(×{factor:.4g}), as A1111 reads it", at, at + 1,
                                f"close it with `{')' if what == '(' else ']'}`, or write `\\{what}` for the "
                                "character"))
    return _merged(res), issues


def _close_at_end(res: list, round_starts: list[int], square_starts: list[int]) -> None:
    """Weigh the pieces by the brackets never closed, as A1111 closes them at the end: each `(` (then each
    `[`), in order, multiplies every piece from its own on. Done bracket by bracket that is quadratic (3,000
    unclosed brackets before 3,000 pieces took 9 s); here each piece gets its count of brackets, and the
    repeated products are shared, computed one multiplication at a time so the weights are the same bits."""
    if not round_starts and not square_starts:
        return
    powers: dict[tuple[float, float], list[float]] = {}

    def repeated(value: float, factor: float, times: int) -> float:
        seq = powers.setdefault((value, factor), [value])
        while len(seq) <= times:
            seq.append(seq[-1] * factor)
        return seq[times]

    for k, p in enumerate(res):
        if p == BREAK:
            continue
        rounds, squares = bisect.bisect_right(round_starts, k), bisect.bisect_right(square_starts, k)
        p[1] = repeated(repeated(p[1], ROUND, rounds), SQUARE, squares)


def _break_split(tok: str) -> list[str]:
    """`re.split(r"\\s*\\bBREAK\\b\\s*", tok)`, in linear time: that pattern retries its `\\s*` from every
    space of a long run of spaces (20,000 spaces took 5.7 s). Each BREAK is found first, then the spaces
    around it are stripped (`str.rstrip` and `\\s` agree on what a space is)."""
    out, last = [], 0
    for m in _BREAK_WORD.finditer(tok):
        out.append(tok[last:m.start()].rstrip())
        last = _SPACES.match(tok, m.end()).end()
    out.append(tok[last:])
    return out


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
        if kind in LOADED_NETWORKS:
            continue  # compiler/networks.py resolves and checks these
        out.append(Issue("DFM502", False, f"`<{kind}:…>` is not implemented: the tag is left out of the prompt "
                         f"and dfm renders without the {kind}", m.start(), m.end(),
                         "remove the tag; dfm loads LoRAs (`<lora:…>`, `lora \"file\"`) but no other extra network"))
    return out


def check_composition(text: str, negative: bool) -> list[Issue]:
    """What `AND`, backticks and the editing brackets of a prompt text mean that a user may not expect:
    `AND` in a negative is text; too many sub-prompts; an unclosed backtick. Offsets into `text`."""
    out = []
    if negative:
        for m in AND.finditer(text):
            out.append(Issue("DFM502", False, "A1111 has no `AND` in negative prompts: the whole text, `AND` "
                             "included, is encoded as one prompt", m.start(), m.end(),
                             "write one negative prompt, or lower the weight of a term: `(grainy:0.5)`"))
    else:
        parts = AND.split(text)
        if len(parts) > MAX_PARTS:
            at = [m for m in AND.finditer(text)][MAX_PARTS - 1]
            out.append(Issue("DFM503", True, f"{len(parts)} sub-prompts joined with `AND` (at most {MAX_PARTS}): "
                             "each one is one more UNet pass per step", at.start(), at.end(),
                             "merge sub-prompts, or blend prompts over time with `prompt_crossfade`"))
    ticks = [i for i, c in enumerate(text) if c == "`"]
    if len(ticks) % 2:
        at = ticks[-1]
        out.append(Issue("DFM503", False, "a backtick that is never closed is encoded as text", at, at + 1,
                         "close the expression with a second backtick: `` `1+t/max_f` ``"))
    return out


# ---- Deforum's backtick expressions ------------------------------------------------------------------------------


def backticks(text: str) -> list[tuple[int, int, str]]:
    """Each `` `expression` `` in `text`: (start, end of the backticked span, the expression's text)."""
    return [(m.start(), m.end(), m.group(0)[1:-1]) for m in _BACKTICKS.finditer(text)]


@lru_cache(maxsize=4096)
def backtick_expression(source: str) -> ir.Expr | None:
    """The dfm expression between a pair of backticks, or None when it is not one (`check_backtick` says
    why). Deforum evaluates it with numexpr after replacing every letter `t` by the frame number, so
    `sqrt(t)` breaks there; dfm parses it, so `t` is the frame wherever it stands as a name."""
    if not source.strip() or "\n" in source:
        return None
    st = parse_statement(f"weight ({source})")
    if st is None or len(st.args) != 1 or not isinstance(st.args[0], ir.EXPR_NODES):
        return None
    return st.args[0]


def format_number(x: float) -> str:
    """A weight as the text that replaces its backticks: the shortest decimal that reads back as `x`, never
    in exponent form (A1111's weight patterns take no exponent: Deforum's `1e-05` would be text). A whole
    number is written without a fraction, as Deforum writes it: in `[cat:dog:`3`]` it is the step 3, where
    `3.0` would be read as the fraction 300 % of the steps and never switch."""
    if float(x).is_integer() and abs(x) < 2**53:
        return str(int(x))
    shown = repr(float(x))  # the shortest round-trip decimal: what numpy prints too, and 20x faster
    return shown if "e" not in shown else np.format_float_positional(float(x), trim="-")


def substitute(text: str, values: list[float | None], ticks: list[tuple[int, int, str]] | None = None) -> str:
    """`text` with its i-th backtick span replaced by `values[i]` (Deforum's prepare_prompt, without its
    textual `t` replacement: the expression was evaluated as an expression); a None value leaves its span
    as written. `ticks`: `backticks(text)`, when the caller has it."""
    out, last = [], 0
    for (start, end, _), v in zip(backticks(text) if ticks is None else ticks, values, strict=True):
        out += [text[last:start], text[start:end] if v is None else format_number(v)]
        last = end
    out.append(text[last:])
    return "".join(out)


# ---- AND: A1111's composable prompts -----------------------------------------------------------------------------

# sub-prompts of one prompt, as many as the runtime renders: each is one more conditional UNet pass per step
MAX_PARTS = 32
_WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*\Z")  # A1111's re_weight, its optional tail


def split_and(text: str) -> list[tuple[str, float]]:
    """A1111's get_multicond_prompt_list for one prompt: (text, weight) per `AND` sub-prompt. A trailing
    `:number` is the weight (default 1); the text keeps its leading blanks and loses its trailing ones."""
    out = []
    for sub in AND.split(text):
        m = _WEIGHT.search(sub)
        out.append((sub[:m.start()], float(m.group(1))) if m else (sub.rstrip(), 1.0))
    return out


# ---- prompt editing and alternation: A1111's schedules -------------------------------------------------------------

MAX_NESTING = 100  # brackets inside brackets: deeper, the whole text is read as written (no recursion error)
# lark's SIGNED_NUMBER (A1111's `when`), with the blanks A1111's grammar allows around it, and the `]`
_WHEN = re.compile(r"\s*([+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))\s*]")
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")  # A1111's `plain` (a backslash escapes one character)


@dataclass(frozen=True)
class _Edit:
    before: tuple | None  # None: `[to:when]`
    after: tuple
    when: str  # as written; `schedule` turns it into a step


@dataclass(frozen=True)
class _Alternate:
    options: tuple[tuple, ...]


class _Reader:
    """A1111's schedule grammar (modules/prompt_parser.py `schedule_parser`) read by recursive descent.

    A bracket group is prompt editing, alternation or emphasis only if everything inside it is well
    formed; a group that is not is literal text, which A1111's grammar allows at the top level only (so a
    group inside an ill-formed group is text too). A `|` outside an alternation, or a backslash before a
    line break or at the end, makes A1111's parse fail: then the whole text is its own one-step schedule.
    A1111 parses with lark's Earley parser, which is cubic in the text (a 1,700-character prompt of
    brackets takes a minute); this reader is linear: each position is read at most once (`memo`)."""

    def __init__(self, text: str):
        self.text, self.memo, self.too_deep = text, {}, False
        self.spans: dict[int, tuple[int, int]] = {}  # id of each edit or alternation -> its [start, end)

    def top(self) -> tuple | None:
        """The text as items, or None when A1111's parse fails (or the nesting is past MAX_NESTING)."""
        text, out, i = self.text, [], 0
        while i < len(text):
            c = text[i]
            if c in "([":
                got = self.group(i, 0)
                if got is not None:
                    out.append(got[0])
                    i = got[1]
                    continue
                out.append(c)
                i += 1
            elif c in "]):":
                out.append(c)
                i += 1
            else:
                m = _PLAIN.match(text, i)
                if m is None:  # `|`, or a backslash that escapes nothing
                    return None
                out.append(m.group(0))
                i = m.end()
        return None if self.too_deep else tuple(out)

    def seq(self, i: int, depth: int) -> tuple[tuple, int] | None:
        """A1111's `prompt`: well-formed items up to the first `]`, `)`, `:` or `|` (or the end)."""
        key = ("seq", i)
        if key in self.memo:
            return self.memo[key]
        text, out, j, res = self.text, [], i, None
        while True:
            if j >= len(text) or text[j] in "]):|":
                res = (tuple(out), j)
                break
            if text[j] in "([":
                got = self.group(j, depth)
                if got is None:
                    break
                out.append(got[0])
                j = got[1]
                continue
            m = _PLAIN.match(text, j)
            if m is None:
                break
            out.append(m.group(0))
            j = m.end()
        self.memo[key] = res
        return res

    def group(self, i: int, depth: int) -> tuple[object, int] | None:
        """The bracket group at `i` and the offset after it, or None when it is not well formed."""
        key = ("group", i)
        if key in self.memo:
            return self.memo[key]
        if depth >= MAX_NESTING:
            self.too_deep = True
            return None
        res = (self.round if self.text[i] == "(" else self.square)(i, depth + 1)
        self.memo[key] = res
        if res is not None and isinstance(res[0], (_Edit, _Alternate)):
            self.spans[id(res[0])] = (i, res[1])
        return res

    def round(self, i: int, depth: int):
        text = self.text
        first = self.seq(i + 1, depth)
        if first is None or first[1] >= len(text):
            return None
        inner, j = first
        if text[j] == ")":
            return ("(", *inner, ")"), j + 1
        if text[j] == ":":
            second = self.seq(j + 1, depth)
            if second is not None and second[1] < len(text) and text[second[1]] == ")":
                return ("(", *inner, ":", *second[0], ")"), second[1] + 1
        return None

    def square(self, i: int, depth: int):
        text = self.text
        first = self.seq(i + 1, depth)
        if first is None or first[1] >= len(text):
            return None
        inner, j = first
        if text[j] == "]":
            return ("[", *inner, "]"), j + 1
        if text[j] == "|":
            options = [inner]
            while j < len(text) and text[j] == "|":
                nxt = self.seq(j + 1, depth)
                if nxt is None:
                    return None
                options.append(nxt[0])
                j = nxt[1]
            if j < len(text) and text[j] == "]":
                return _Alternate(tuple(options)), j + 1
            return None
        if text[j] != ":":
            return None
        when = _WHEN.match(text, j + 1)  # `[to:when]`
        if when is not None:
            return _Edit(None, inner, when.group(1)), when.end()
        second = self.seq(j + 1, depth)
        if second is None or second[1] >= len(text) or text[second[1]] != ":":
            return None
        when = _WHEN.match(text, second[1] + 1)
        if when is None:
            return None
        return _Edit(inner, second[0], when.group(1)), when.end()


def _steps_of(node, steps: int, whens: dict, out: set[int]) -> None:
    if isinstance(node, str):
        return
    if isinstance(node, _Edit):
        step = _when_step(node.when, steps)
        whens[id(node)] = step
        if step >= 1:
            out.add(step)
        for part in (node.before or (), node.after):
            for x in part:
                _steps_of(x, steps, whens, out)
    elif isinstance(node, _Alternate):
        out.update(range(1, steps + 1))
        for option in node.options:
            for x in option:
                _steps_of(x, steps, whens, out)
    else:
        for x in node:
            _steps_of(x, steps, whens, out)


def _when_step(when: str, steps: int) -> int:
    """The step an edit's `when` switches at: with a `.` a fraction of the steps, else a step."""
    v = float(when)
    return min(steps, int(v * steps if "." in when else v))


def _text_at(node, step: int, whens: dict, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, _Edit):
        for x in (node.before or ()) if step <= whens[id(node)] else node.after:
            _text_at(x, step, whens, out)
    elif isinstance(node, _Alternate):
        for x in node.options[(step - 1) % len(node.options)]:
            _text_at(x, step, whens, out)
    else:
        for x in node:
            _text_at(x, step, whens, out)


def schedule(text: str, steps: int) -> list[tuple[int, str]]:
    """A1111's prompt schedule of one (sub-)prompt for `steps` sampler steps: ``[(end_step, text), …]``,
    end steps ascending, the last one `steps`. Sampler step s (counted from 0) uses the first entry whose
    end step is >= s."""
    steps = int(steps)
    if "[" not in text:  # no editing, no alternation: nothing to read (and plain prompts stay fast)
        return [(steps, text)]
    tree = _Reader(text).top()
    if tree is None:
        return [(steps, text)]
    whens: dict[int, int] = {}
    ends = {steps}
    _steps_of(tree, steps, whens, ends)
    out = []
    for end in sorted(ends):
        buf: list[str] = []
        _text_at(tree, end, whens, buf)
        out.append((end, "".join(buf)))
    return out


def first_switch_bracket(text: str, steps: int) -> tuple[int, int, int] | None:
    """(start, end, step) of the editing or alternation bracket in `text` whose switch comes first in
    A1111's schedule for `steps` steps (the first in the text among equals), so a diagnostic about the
    switch can point at it; None when no bracket switches. Backticks are read as numbers of their own
    length (`` `t/10` `` as ``0     ``): offsets stay those of `text`, a `when` written as one never switches."""
    if "[" not in text:
        return None
    masked = _BACKTICKS.sub(lambda m: "0" + " " * (len(m.group(0)) - 1), text)
    reader = _Reader(masked)
    tree = reader.top()
    if tree is None:
        return None
    best: tuple[int, int, int] | None = None
    stack = list(tree)
    while stack:  # depth first; every bracket is compared, so the visiting order does not matter
        node = stack.pop()
        if isinstance(node, str):
            continue
        if isinstance(node, _Edit):
            step = _when_step(node.when, steps)
            switch = step if 1 <= step < steps else None
            stack += [*(node.before or ()), *node.after]
        elif isinstance(node, _Alternate):
            switch = 1 if steps > 1 else None
            stack += [x for option in node.options for x in option]
        else:
            stack += list(node)
            continue
        start, end = reader.spans[id(node)]
        if switch is not None and (best is None or (switch, start) < (best[2], best[0])):
            best = (start, end, switch)
    return best


# ---- the table's value ------------------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _pieces_list(text: str) -> list:
    """`pieces` as the JSON lists of the composite form, cached across rows: a weight expression changes
    a part's weight on every frame, rarely its text. (Read only: json.dumps never changes it.)"""
    return [p if p == BREAK else [p[0], p[1]] for p in pieces(text)]


def table_pieces(text: str, steps: int, negative: bool = False) -> str:
    """The `*_pieces` value of a prompt text (backticks already substituted) on a row of `steps` schedule
    steps (the row's steps × `catalogue.step_multiplier(sampler)`, A1111's count for second-order samplers):
    the simple form (`pieces_json`) when the text is one sub-prompt of weight 1 without editing or
    alternation, else the composite JSON object {"parts": [{"weight", "schedule"}, …]}."""
    parts = [(text, 1.0)] if negative else split_and(text)
    if len(parts) == 1 and parts[0][1] == 1.0:
        only = schedule(parts[0][0], steps)
        if len(only) == 1:
            return pieces_json(only[0][1])
    obj = {"parts": [{"weight": w, "schedule": [[end, _pieces_list(t)] for end, t in schedule(sub, steps)]}
                     for sub, w in parts]}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def is_composite(value: str) -> bool:
    """Whether a `*_pieces` value is the composite form (a JSON object, not a list)."""
    return value.startswith("{")


def first_switch(value: str) -> int | None:
    """The earliest end step of a schedule entry that another follows, over the parts of a `*_pieces`
    value: evaluation `first_switch + 1` is the first that sees a different text. None: nothing switches."""
    if not is_composite(value):
        return None
    ends = [p["schedule"][0][0] for p in json.loads(value)["parts"] if len(p["schedule"]) > 1]
    return min(ends) if ends else None


def conditional_parts(value: str) -> tuple[int, bool]:
    """(conditional passes per step, whether any part's weight is not 1) of a `*_pieces` value."""
    if not is_composite(value):
        return 1, False
    parts = json.loads(value)["parts"]
    return len(parts), len(parts) != 1 or any(p["weight"] != 1 for p in parts)


__all__ = ["BREAK", "MAX_PARTS", "Issue", "backtick_expression", "backticks", "check", "check_composition",
           "conditional_parts", "first_switch", "first_switch_bracket", "format_number", "is_composite", "pieces",
           "pieces_json", "schedule", "split_and", "substitute", "table_pieces"]
