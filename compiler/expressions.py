"""Expressions: static checks (names, arity) and vectorised evaluation over frames with numpy.

Semantics follow numexpr as Deforum uses it: true division, Python's floor modulo, comparisons give
0/1, ``&`` ``|`` ``~`` are logical. Never Python ``eval``: the grammar builds the tree, this module
walks it once per key segment with numpy arrays, so a 100,000-frame schedule is a handful of array ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..dsl import ir
from ..dsl.diagnostics import Diagnostic, error
from .catalogue import did_you_mean


def _clamp(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def _where(c, a, b):
    return np.where(np.asarray(c) != 0, a, b)


# name -> (function, minimum arity, maximum arity, one-line doc)
FUNCTIONS: dict[str, tuple[Callable, int, int, str]] = {
    "sin": (np.sin, 1, 1, "sine (radians)"),
    "cos": (np.cos, 1, 1, "cosine (radians)"),
    "tan": (np.tan, 1, 1, "tangent (radians)"),
    "arcsin": (np.arcsin, 1, 1, "inverse sine"),
    "arccos": (np.arccos, 1, 1, "inverse cosine"),
    "arctan": (np.arctan, 1, 1, "inverse tangent"),
    "arctan2": (np.arctan2, 2, 2, "arctan2(y, x): angle of the point (x, y)"),
    "sinh": (np.sinh, 1, 1, "hyperbolic sine"),
    "cosh": (np.cosh, 1, 1, "hyperbolic cosine"),
    "tanh": (np.tanh, 1, 1, "hyperbolic tangent"),
    "arcsinh": (np.arcsinh, 1, 1, "inverse hyperbolic sine"),
    "arccosh": (np.arccosh, 1, 1, "inverse hyperbolic cosine"),
    "arctanh": (np.arctanh, 1, 1, "inverse hyperbolic tangent"),
    "exp": (np.exp, 1, 1, "e to the power x"),
    "expm1": (np.expm1, 1, 1, "exp(x) - 1, exact near 0"),
    "log": (np.log, 1, 1, "natural logarithm"),
    "log10": (np.log10, 1, 1, "base-10 logarithm"),
    "log1p": (np.log1p, 1, 1, "log(1 + x), exact near 0"),
    "sqrt": (np.sqrt, 1, 1, "square root"),
    "abs": (np.abs, 1, 1, "absolute value"),
    "where": (_where, 3, 3, "where(cond, a, b): a where cond is non-zero, else b"),
    "floor": (np.floor, 1, 1, "round down"),
    "ceil": (np.ceil, 1, 1, "round up"),
    "round": (np.round, 1, 1, "round to the nearest integer, halves to even (as Python and numpy)"),
    "min": (np.minimum, 2, 2, "the smaller of two values"),
    "max": (np.maximum, 2, 2, "the larger of two values"),
    "clamp": (_clamp, 3, 3, "clamp(x, lo, hi): x limited to [lo, hi]"),
}

# The names an expression may use, with their meaning (values are filled per scene in `environment`).
VARIABLES: dict[str, str] = {
    "t": "the frame index (0, 1, 2 …)",
    "max_f": "the last frame index: frames − 1 (as in the A1111 extension)",
    "max_frames": "the number of frames (as in the Deforum notebook)",
    "fps": "frames per second",
    "bpm": "beats per minute (NaN when the scene sets none)",
    "s": "the start seed",
    "pi": "π = 3.14159…",
    "e": "Euler's number 2.71828…",
}

# The per-frame features of the scene's `audio` track (compiler/audio.py computes them; each also
# becomes the table column `audio_<name>`). Using one in a scene without `audio` is DFM205.
AUDIO_VARIABLES: dict[str, str] = {
    "onset": "audio: onset strength in the frame (spectral flux, largest in the frame's window), 0..1",
    "rms": "audio: loudness (RMS, mean over the frame's window), 0..1; silence is 0",
    "beat": "audio: 1 on a frame that holds a detected beat, else 0",
    "beat_phase": "audio: 0 on a beat frame, rising through the beat to just under 1",
    "low": "audio: energy of 20–250 Hz (bass), 0..1",
    "mid": "audio: energy of 250–4000 Hz, 0..1",
    "high": "audio: energy above 4000 Hz, 0..1",
}

_BINARY: dict[str, Callable] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "%": np.mod,
    "**": np.power,
    "==": lambda a, b: np.equal(a, b).astype(np.float64),
    "!=": lambda a, b: np.not_equal(a, b).astype(np.float64),
    "<": lambda a, b: np.less(a, b).astype(np.float64),
    "<=": lambda a, b: np.less_equal(a, b).astype(np.float64),
    ">": lambda a, b: np.greater(a, b).astype(np.float64),
    ">=": lambda a, b: np.greater_equal(a, b).astype(np.float64),
    "&": lambda a, b: ((np.asarray(a) != 0) & (np.asarray(b) != 0)).astype(np.float64),
    "|": lambda a, b: ((np.asarray(a) != 0) | (np.asarray(b) != 0)).astype(np.float64),
}


def environment(frames: int, fps: float, bpm: float | None, seed: int) -> dict[str, float]:
    """The scene-wide constants; `t` is bound per evaluation."""
    return {
        "max_f": float(frames - 1),
        "max_frames": float(frames),
        "fps": float(fps),
        "bpm": float(bpm) if bpm else float("nan"),
        "s": float(seed),
        "pi": float(np.pi),
        "e": float(np.e),
    }


def check_expr(expr: ir.Expr, path: str, parameter: str | None = None, allow_t: bool = True,
               audio: bool = False) -> list[Diagnostic]:
    """Unknown functions and variables, wrong argument counts: every one found, not just the first.
    `audio`: the scene has an `audio` track, so the audio variables may be used (per frame only)."""
    out: list[Diagnostic] = []
    names = set(VARIABLES) if allow_t else set(VARIABLES) - {"t"}
    if allow_t and audio:
        names |= set(AUDIO_VARIABLES)

    def walk(e: ir.Expr) -> None:
        if isinstance(e, ir.Variable):
            if e.name in AUDIO_VARIABLES and e.name not in names:
                if not allow_t:
                    out.append(error("DFM202", f"`{e.name}` (an audio feature) varies per frame and cannot be "
                                     "used in a static setting", e.span, path=path, parameter=parameter,
                                     help="static settings take one value for the whole scene"))
                else:
                    out.append(error("DFM205", f"`{e.name}` is an audio feature but the scene has no `audio`",
                                     e.span, path=path, parameter=parameter,
                                     help='add `audio "song.mp3"` (the track the motion follows)'))
                return
            if e.name not in names:
                if e.name == "t" and not allow_t:
                    out.append(error("DFM202", "`t` (the frame) cannot be used in a static setting", e.span,
                                     path=path, parameter=parameter,
                                     help="static settings take one value for the whole scene"))
                    return
                guess = VARIABLE_HINTS.get(e.name) or did_you_mean(e.name, names | set(FUNCTIONS))
                out.append(error("DFM202", f"unknown variable `{e.name}`", e.span, path=path, parameter=parameter,
                                 help=f"did you mean `{guess}`?" if guess else
                                 f"variables are {', '.join(sorted(names))}"))
        elif isinstance(e, ir.Call):
            spec = FUNCTIONS.get(e.func)
            if spec is None:
                guess = did_you_mean(e.func, FUNCTIONS)
                out.append(error("DFM201", f"unknown function `{e.func}`", e.name_span or e.span, path=path,
                                 parameter=parameter,
                                 help=f"did you mean `{guess}`?" if guess else "see the function list in "
                                 "docs/language.md"))
            else:
                _, lo, hi = spec[:3]
                if not lo <= len(e.args) <= hi:
                    want = str(lo) if lo == hi else f"{lo} to {hi}"
                    out.append(error("DFM203", f"`{e.func}` takes {want} argument{'s' if hi != 1 else ''}, "
                                     f"got {len(e.args)}", e.span, path=path, parameter=parameter,
                                     help=f"{e.func}: {spec[3]}"))
            for a in e.args:
                walk(a)
        elif isinstance(e, ir.Unary):
            walk(e.operand)
        elif isinstance(e, ir.Binary):
            walk(e.left)
            walk(e.right)

    walk(expr)
    return out


def evaluate(expr: ir.Expr, env: Mapping[str, float | np.ndarray]) -> np.ndarray | float:
    """Evaluate a checked expression; `env["t"]` may be an array of frame indices."""
    with np.errstate(all="ignore"):
        return _eval(expr, env)


def _eval(e: ir.Expr, env: Mapping[str, float | np.ndarray]):
    if isinstance(e, ir.Number):
        return e.value
    if isinstance(e, ir.Variable):
        return env[e.name]
    if isinstance(e, ir.Binary):
        return _BINARY[e.op](_eval(e.left, env), _eval(e.right, env))
    if isinstance(e, ir.Unary):
        v = _eval(e.operand, env)
        if e.op == "-":
            return np.negative(v)
        if e.op == "~":
            return (np.asarray(v) == 0).astype(np.float64)
        return v
    if isinstance(e, ir.Call):
        fn = FUNCTIONS[e.func][0]
        return fn(*(_eval(a, env) for a in e.args))
    raise TypeError(f"not an expression: {e!r}")


# names users write for the variables dfm has (the frame index is `t`, as in Deforum)
VARIABLE_HINTS = {"frame": "t", "frames": "max_f", "f": "t", "i": "t", "n": "t", "frame_idx": "t",
                  "frame_index": "t", "frame_number": "t", "time": "t", "max_frames": "max_f", "total_frames": "max_f"}


def evaluate_frames(expr: ir.Expr, env: Mapping[str, float], start: int, stop: int) -> np.ndarray:
    """The expression on frames start..stop-1, as a float64 array."""
    t = np.arange(start, stop, dtype=np.float64)
    # per-frame variables (the audio features) are arrays over all frames: this segment's part of each
    scope = {k: v[start:stop] if isinstance(v, np.ndarray) else v for k, v in env.items()}
    value = evaluate(expr, {**scope, "t": t})
    return np.broadcast_to(np.asarray(value, dtype=np.float64), t.shape).copy()


def constant_value(expr: ir.Expr, env: Mapping[str, float]) -> float:
    return float(np.asarray(evaluate(expr, env), dtype=np.float64))


_DEFORUM_NUMBER = __import__("re").compile(r"^[+-]?(\d*)(\.\d+)?$")


def is_plain_number(expr: ir.Expr) -> bool:
    """Deforum's number/expression split: `1`, `-3`, `.5`, `0.65` are numbers; `1e-3`, `1.`, `t` are not."""
    if isinstance(expr, ir.Unary) and expr.op in "+-" and isinstance(expr.operand, ir.Number):
        expr = expr.operand
    return isinstance(expr, ir.Number) and bool(_DEFORUM_NUMBER.match(expr.text)) and expr.text not in ("", ".")
