"""Deforum's schedule strings (`0: (1), 10: (2)`), read into keys and written from compiled values.

- `split_deforum_keys` cuts a Deforum string into (frame text, value text, curve word) and `frame_of`
  evaluates a frame position (`"max_f-2"` -> 118): the importer's reading.
- `deforum_schedule` writes the keys of a compiled schedule in the A1111 extension's syntax, keeping a
  key where Deforum's semantics equal dfm's and writing number keys (`number_keys`) for the segments it
  cannot express; `deforum_expr` writes one expression in the extension's numexpr subset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from ..dsl import ir
from ..dsl.formatter import format_expr
from .deforum_names import DEFORUM_FUNCTIONS, DEFORUM_OPERATORS, DEFORUM_VARIABLES
from .expressions import AUDIO_VARIABLES, FUNCTIONS, constant_value
from .interop import number_keys, number_text
from .scene_writer import expression
from .schedules import ResolvedKey

# ---- reading -------------------------------------------------------------------------------------------


def split_deforum_keys(text: str) -> list[tuple[str, str, str]] | None:
    """`0:(1), "max_f-2":(where(t>5, 1, 0))` -> [(frame text, value text, curve word)], or None.

    Commas and colons inside the parentheses and quotes belong to the value (the notebook's reading,
    and what the extension's users mean).

    This is a scanner of its own, not the language's keyframe parser (`dsl.parser.parse_statement`),
    because Deforum's key syntax is not dfm's on inputs the tests pin:

    - a frame position may be a numexpr expression, quoted (`"max_f-2":(1)`, in the A1111 extension's
      own default file; `test_string_frame_keys_in_schedules_are_evaluated`) or not (`max_f/2:(1)`);
      dfm's grammar has only numbers and durations there, so the whole schedule would not parse;
    - `4s:(1)` is seconds in dfm but a numexpr error in Deforum: the scanner returns the text `4s`, which
      `frame_of` refuses, instead of a key at frame 60;
    - the value is whatever the balanced parentheses hold (`("Euler a")`, `(1 2)`), so the importer can
      tell "a keyed schedule with a value dfm rejects" (commented out, with the compiler's reason) from
      "not a schedule" (`0:(1) 10:(2)`, no comma), where the grammar only says "does not parse".

    Values are then parsed with the language's expression parser (`scene_writer.expression`)."""
    keys, i, n = [], 0, len(text)
    while True:
        while i < n and (text[i].isspace() or text[i] == ","):
            i += 1
        if i >= n:
            return keys
        colon = text.find(":", i)
        if colon < 0 or "(" in text[i:colon]:
            return None
        frame = text[i:colon].strip()
        j = colon + 1
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != "(":
            return None
        depth, k, quote_ch = 0, j, None
        while k < n:
            c = text[k]
            if quote_ch:
                quote_ch = None if c == quote_ch else quote_ch
            elif c in "\"'":
                quote_ch = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if depth != 0:
            return None
        value = text[j + 1:k]
        m = re.match(r"\s*([A-Za-z_]\w*)?", text[k + 1:])
        curve = m.group(1) or ""
        i = k + 1 + m.end()
        if i < n and not (text[i].isspace() or text[i] == ","):
            return None
        keys.append((frame, value, curve))


def frame_of(text: str, env: Mapping[str, float]) -> int | None:
    """A Deforum key position: an integer, or a numexpr expression over max_f/s, cut with int()."""
    expr = expression(text.strip().strip("\"'"))
    if expr is None:
        return None
    try:
        value = constant_value(expr, env)
    except (KeyError, TypeError, ValueError):
        return None
    return math.trunc(value) if math.isfinite(value) else None


# ---- writing -------------------------------------------------------------------------------------------


def deforum_expr(e: ir.Expr, env: Mapping[str, float]) -> tuple[str | None, str]:
    """The expression in the A1111 extension's numexpr syntax, or (None, why not).

    Scene constants (pi, e, fps, bpm, s, max_frames) are written as their values; t and max_f stay."""
    why = _not_deforum(e)
    return (None, why) if why else (format_expr(_substitute(e, env)), "")


def _not_deforum(e: ir.Expr) -> str:
    """Why the A1111 extension cannot read this expression ("" when it can)."""
    if isinstance(e, ir.Unary):
        return f"the operator `{e.op}`" if e.op not in "+-" else _not_deforum(e.operand)
    if isinstance(e, ir.Binary):
        if e.op not in DEFORUM_OPERATORS:
            return f"the operator `{e.op}`"
        return _not_deforum(e.left) or _not_deforum(e.right)
    if isinstance(e, ir.Call):
        if e.func not in DEFORUM_FUNCTIONS:
            comma = e.func in FUNCTIONS and FUNCTIONS[e.func][1] > 1
            return f"`{e.func}` ({'a comma, which the extension splits on' if comma else 'not in Deforum'})"
        return next((w for w in map(_not_deforum, e.args) if w), "")
    if isinstance(e, ir.Variable) and e.name in AUDIO_VARIABLES:
        return f"`{e.name}` (an audio feature: Deforum has none)"
    return ""


def _substitute(e: ir.Expr, env: Mapping[str, float]) -> ir.Expr:
    """The expression with every scene constant replaced by its value."""
    if isinstance(e, ir.Variable) and e.name not in DEFORUM_VARIABLES:
        return ir.Number(env[e.name], number_text(env[e.name]))
    if isinstance(e, ir.Unary):
        return ir.Unary(e.op, _substitute(e.operand, env))
    if isinstance(e, ir.Binary):
        return ir.Binary(e.op, _substitute(e.left, env), _substitute(e.right, env))
    if isinstance(e, ir.Call):
        return ir.Call(e.func, tuple(_substitute(a, env) for a in e.args))
    return e


def _number_key(e: ir.Expr) -> str:
    if isinstance(e, ir.Unary):
        return e.op + e.operand.text
    return e.text


def join_keys(keys: list[tuple[int, str]]) -> str:
    """`0: (1), 10: (2)`: the extension's own layout."""
    return ", ".join(f"{f}: ({v})" for f, v in keys)


def deforum_schedule(keys: list[ResolvedKey], values: np.ndarray, env: Mapping[str, float]
                     ) -> tuple[str, list[str]]:
    """A Deforum schedule string giving `values`, and why any part of it had to be written per frame."""
    frames = len(values)
    keys = [k for k in keys if k.frame < frames]
    out: list[tuple[int, str]] = []
    reasons: list[str] = []
    if not keys or keys[0].frame > 0:
        out.append((0, number_text(values[0])))
    for i, k in enumerate(keys):
        stop = keys[i + 1].frame if i + 1 < len(keys) else frames
        last = i + 1 == len(keys)
        if k.is_number:
            text = _number_key(k.value)
            if k.curve == "linear" or last:
                out.append((k.frame, text))
            elif k.curve == "step":
                out.append((k.frame, text))
                if stop - 1 > k.frame:
                    out.append((stop - 1, text))
            else:
                out += number_keys(values, k.frame, stop)
                reasons.append(f"the {k.curve} curve from frame {k.frame}")
            continue
        text, why = deforum_expr(k.value, env)
        if text is not None:
            out.append((k.frame, text))
        else:
            out += number_keys(values, k.frame, stop)
            reasons.append(f"{why} at frame {k.frame}")
    return join_keys(out), reasons


__all__ = ["split_deforum_keys", "frame_of", "deforum_expr", "deforum_schedule", "join_keys"]
