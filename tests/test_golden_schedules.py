"""Golden per-frame values for Deforum schedule strings, and dfm's own schedule extensions.

Two sources of truth, neither of them the code under test:

* ``deforum_reference`` below: a few-line re-implementation of the notebook's ``parse_key_frames`` +
  ``get_inbetweens`` (reference/deforum-notebook.md §2): the notebook regex, ``check_is_number``, the
  hold-and-evaluate loop calling numexpr with an explicit ``local_dict``, row 0 / row n-1 forced,
  then a linear fill. It is itself pinned against the behaviours the notes verified on the notebook's
  own stack (``test_reference_matches_notebook_notes``), so a drift in the reference shows up there.
* literal lists written by hand, for behaviour Deforum has no answer to (it crashes, or the syntax is
  dfm-only: curves, seconds, beats, ``pi``, ``clamp``…).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose

from dfm.api import evaluate_schedule as evaluate_schedule_text
from dfm.dsl.diagnostics import DfmError

numexpr = pytest.importorskip("numexpr")

# ---- the independent reference: Deforum's algorithm ------------------------------------------------

# The notebook's keyframe pattern and number test, verbatim as regular expressions (they are the spec).
_KEY_RE = re.compile(r"((?P<frame>[0-9]+):[\s]*\((?P<param>[\S\s]*?)\)([,][\s]?|[\s]?$))")
_NUMBER_RE = re.compile(r"^(?=.)([+-]?([0-9]*)(\.([0-9]+))?)$")


def deforum_reference(text: str, frames: int) -> np.ndarray:
    """Deforum's per-frame values for `text` over `frames` frames (float64)."""
    keys = {int(m.group("frame")): m.group("param") for m in _KEY_RE.finditer(text)}
    if not keys:
        raise ValueError("Key Frame string not correctly formatted")
    if 0 not in keys:
        # Deforum reads `value_is_number` before assigning it: UnboundLocalError. Refuse likewise.
        raise ValueError("Deforum needs a key at frame 0")
    values = np.full(frames, np.nan)
    value, is_number = "", True
    for i in range(frames):
        if i in keys:
            value = keys[i]
            is_number = _NUMBER_RE.match(value) is not None
            if is_number:
                values[i] = float(value)
        # Deliberately outside the "is a key" branch: an expression key is re-evaluated every frame
        # until the next key (hold-and-evaluate), exactly where the notebook puts this test.
        if not is_number:
            env = {"t": i, "i": i, "max_frames": frames}
            values[i] = float(numexpr.evaluate(value, local_dict=env, global_dict={}))
    known = ~np.isnan(values)
    values[0] = values[known][0]
    values[-1] = values[known][-1]
    known = ~np.isnan(values)
    index = np.arange(frames)
    # pandas' 'linear' interpolate ignores the index and lerps between positions: np.interp does the same.
    return np.interp(index, index[known], values[known])


# ---- Deforum cases: expectations come from the reference -----------------------------------------

# (id, schedule text, frames). Each id is its own test.
DEFORUM_CASES: list = [  # (id, text, frames), or a pytest.param of those for a known disagreement
    # notebook v0.7.1 defaults (DeforumAnimArgs)
    ("nb-angle", "0:(0)", 10),
    ("nb-zoom", "0:(1.04)", 10),
    ("nb-translation_x", "0:(10*sin(2*3.14*t/10))", 25),
    ("nb-translation_z", "0:(10)", 6),
    ("nb-flip_phi", "0:(t%15)", 40),
    ("nb-flip_fv", "0:(53)", 5),
    ("nb-noise", "0: (0.02)", 8),
    ("nb-strength", "0: (0.65)", 10),
    ("nb-contrast", "0: (1.0)", 6),
    ("nb-hybrid_alpha", "0:(1)", 4),
    ("nb-hybrid_mask_blend", "0:(0.5)", 4),
    ("nb-hybrid_cutoff_high", "0:(100)", 4),
    ("nb-kernel", "0: (5)", 5),
    ("nb-amount", "0: (0.2)", 5),
    ("nb-threshold", "0: (0.0)", 5),
    # A1111 extension defaults
    ("a1111-zoom", "0: (1.0025+0.002*sin(1.25*3.14*t/30))", 60),
    ("a1111-zoom-nospace", "0:(1.0025+0.002*sin(1.25*3.14*t/30))", 120),
    ("a1111-translation_z", "0: (1.75)", 6),
    ("a1111-noise", "0: (0.065)", 8),
    ("a1111-cfg", "0: (7)", 4),
    ("a1111-fov", "0: (70)", 4),
    ("a1111-far", "0: (10000)", 4),
    ("a1111-noise_multiplier", "0: (1.05)", 4),
    ("a1111-amount", "0: (0.1)", 4),
    # number keys interpolate
    ("ramp-0-10", "0:(0), 10:(10)", 11),
    ("triangle-nospace", "0:(0),5:(10),10:(0)", 14),
    ("hold-after-last", "0:(1), 3:(1), 6:(4)", 12),
    ("adjacent-keys", "0:(0), 1:(1), 2:(0)", 6),
    ("last-key-on-last-frame", "0:(0), 9:(9)", 10),
    ("dot-five-is-number", "0:(.5), 6:(1.)", 10),
    ("leading-zeros", "00:(1), 05:(6)", 8),
    # negative and signed numbers are numbers
    ("negative-ramp", "0:(-3), 6:(3)", 9),
    ("signed-floats", "0:(-1.5), 4:(+2)", 7),
    ("negative-dot", "0:(-.5), 4:(.5), 8:(-.5)", 10),
    # expressions hold-and-evaluate; '1e-3', '1.' and a trailing space make a key an expression
    ("exp-notation-is-expression", "0:(1e-3), 6:(1)", 10),
    ("one-dot-is-expression", "0:(1.), 6:(3)", 10),
    ("expression-constant-then-number", "0:(1e1), 5:(0)", 8),
    ("t-mod-15", "0:(t%15)", 50),
    ("t-mod-5-scaled", "0:(t%5*0.1)", 12),
    ("true-division", "0:(t/2)", 7),
    # number -> expression: lerp to the expression's value at its key, then evaluate
    ("worked-example", "0:(0), 4:(t), 8:(2)", 12),
    ("number-to-square", "0:(0), 5:(t*t)", 9),
    ("number-to-sine", "0:(1), 8:(1+0.5*sin(t/3))", 16),
    # expression -> number: evaluate until the key, then the number
    ("expr-to-number", "0:(t*2), 5:(0)", 9),
    ("expr-to-number-to-number", "0:(t*2), 5:(0), 9:(4)", 12),
    ("expr-to-expr", "0:(t), 5:(100-t)", 10),
    ("expr-repeated", "0:(t), 5:(t)", 10),
    ("expr-number-expr", "0:(sin(t)), 4:(2), 8:(cos(t))", 14),
    # separators
    ("sep-comma", "0:(1),10:(2)", 14),
    ("sep-comma-space", "0:(1), 10:(2)", 14),
    ("sep-two-spaces", "0:(1),  6:(2)", 10),
    ("sep-newline", "0:(1),\n4:(5)", 8),
    ("sep-mixed-newlines", "0:(0),\n5:(10),\n10:(0)", 12),
    # Deforum's `,\s?` takes one newline and finditer skips the rest, so a blank line is harmless there
    ("sep-blank-line", "0:(0),\n\n5:(10)", 10),
    ("sep-comment-line", "0:(0),\n# ramp up\n5:(10)", 10),
    ("sep-space-after-colon", "0: (0), 5: (10)", 8),
    ("sep-spaces-inside-expression", "0:(1 + 0.5*t), 4:(0)", 7),
    # nested parentheses
    ("nested-where", "0:(where(t>5, 1, 0))", 10),
    ("nested-where-then-key", "0:(where(t>5, 1, 0)), 10:(3)", 15),
    ("nested-product", "0:(sin(t)*(t/10))", 9),
    ("nested-comparison-product", "0:((t>3)*2)", 7),
    ("bitwise-and", "0:((t>2)&(t<6))", 9),
    ("bitwise-or", "0:((t<2)|(t>6))", 9),
    # numexpr's functions
    ("fn-abs-sin", "0:(abs(sin(t/5)))", 12),
    ("fn-sqrt", "0:(sqrt(t))", 10),
    ("fn-exp", "0:(exp(-t/10))", 10),
    ("fn-log", "0:(log(t+1))", 10),
    ("fn-log10", "0:(log10(t+1))", 10),
    ("fn-tan", "0:(tan(t/20))", 10),
    ("fn-arctan2", "0:(arctan2(t, 10))", 10),
    ("fn-cos-squared", "0:(cos(t)**2)", 10),
    ("fn-tanh", "0:(tanh(t/4-1))", 10),
    # operator precedence and associativity, as numexpr evaluates them
    ("op-left-assoc-minus", "0:(10-5-2)", 3),
    ("op-left-assoc-div", "0:(100/10/5)", 3),
    ("op-power-right-assoc", "0:(2**3**2)", 3),
    ("op-unary-minus-power", "0:(-2**2)", 3),
    ("op-mod-precedence", "0:(2*3%4)", 3),
    ("op-comparison", "0:(t>=3)", 6),
    ("op-equality", "0:(t==2)", 5),
    # max_frames, keys past the end
    ("max-frames", "0:(max_frames)", 12),
    ("t-over-max-frames", "0:(t/max_frames)", 12),
    ("number-to-max-frames-expression", "0:(0), 5:(max_frames-t)", 10),
    ("key-past-end-ignored", "0:(1), 20:(5)", 12),
    ("key-at-frames-ignored", "0:(1), 12:(5)", 12),
    ("keys-past-end-after-ramp", "0:(0), 5:(10), 30:(100)", 10),
    ("expression-key-past-end", "0:(0), 5:(10), 40:(t)", 10),
    # sizes
    ("single-frame", "0:(5)", 1),
    ("single-frame-expression", "0:(t+3)", 1),
    ("two-frames-ramp", "0:(0), 1:(1)", 2),
]


def _twenty_keys() -> str:
    # A long schedule of 20 keys, mixing number keys, expression keys and both kinds of boundary.
    parts = []
    for k in range(20):
        frame = 7 * k
        if k % 5 == 3:
            parts.append(f"{frame}:(0.5*sin(t/7)+{k})")
        elif k % 7 == 6:
            parts.append(f"{frame}:(t%4)")
        else:
            parts.append(f"{frame}:({(-1) ** k * k * 0.25})")
    return ", ".join(parts)


DEFORUM_CASES += [
    ("twenty-keys", _twenty_keys(), 140),
    ("twenty-keys-truncated", _twenty_keys(), 60),
]


# ---- dfm-only cases: expectations written by hand ------------------------------------------------

# (id, text, frames, expected per-frame values, keyword arguments for evaluate_schedule_text)
HAND_CASES: list[tuple[str, str, int, list[float], dict]] = [
    # no key at frame 0: the first key's value holds before it (Deforum crashes here)
    ("no-key-at-0", "3:(5), 6:(8)", 8, [5, 5, 5, 5, 6, 7, 8, 8], {}),
    ("no-key-at-0-single", "4:(2.5)", 6, [2.5] * 6, {}),
    ("no-key-at-0-expression", "2:(t)", 5, [2, 2, 2, 3, 4], {}),
    # constants and variables dfm adds
    ("pi", "0:(pi)", 3, [math.pi] * 3, {}),
    ("sin-half-pi", "0:(sin(pi/2))", 2, [1.0, 1.0], {}),
    ("e", "0:(e)", 2, [math.e] * 2, {}),
    ("max_f", "0:(max_f)", 10, [9] * 10, {}),
    ("t-over-max_f", "0:(t/max_f)", 5, [0, 0.25, 0.5, 0.75, 1], {}),
    ("max_frames-bare", "max_frames", 4, [4, 4, 4, 4], {}),
    # functions dfm adds
    ("clamp", "0:(clamp(t, 2, 5))", 8, [2, 2, 2, 3, 4, 5, 5, 5], {}),
    ("min", "0:(min(t, 3))", 6, [0, 1, 2, 3, 3, 3], {}),
    ("max", "0:(max(t, 3))", 6, [3, 3, 3, 3, 4, 5], {}),
    ("floor", "0:(floor(t/3))", 7, [0, 0, 0, 1, 1, 1, 2], {}),
    ("ceil", "0:(ceil(t/3))", 7, [0, 1, 1, 1, 2, 2, 2], {}),
    ("round", "0:(round(t/3))", 7, [0, 0, 1, 1, 1, 2, 2], {}),
    # an inner `)` followed by `,` cuts Deforum's param (numexpr SyntaxError); dfm parses the call
    ("where-with-nested-call", "0:(where(t<4, sin(t), 2))", 6, [*(math.sin(t) for t in range(4)), 2, 2], {}),
    # arithmetic rules, hand-checked
    ("left-assoc-minus", "10-5-2", 2, [3, 3], {}),
    ("power-right-assoc", "2**3**2", 2, [512, 512], {}),
    ("unary-minus-binds-looser-than-power", "-2**2", 2, [-4, -4], {}),
    ("comparison-gives-0-1", "0:(t>2)", 5, [0, 0, 0, 1, 1], {}),
    ("not-equal-gives-0-1", "0:(t!=2)", 4, [1, 1, 0, 1], {}),
    # a bare value: a constant, or an expression of t, with no keyframes
    ("bare-constant", "1.02 + 0.01", 3, [1.03] * 3, {}),
    ("bare-expression-of-t", "0.5*t", 4, [0, 0.5, 1, 1.5], {}),
    # the worked example from the notes, by hand
    ("worked-example-by-hand", "0:(0), 4:(t), 8:(2)", 12, [0, 1, 2, 3, 4, 5, 6, 7, 2, 2, 2, 2], {}),
    # curves: the curve word after a key shapes the segment that starts at that key
    ("step", "0:(0) step, 4:(8)", 6, [0, 0, 0, 0, 8, 8], {}),
    ("step-then-linear", "0:(0) step, 4:(8), 8:(0)", 9, [0, 0, 0, 0, 8, 6, 4, 2, 0], {}),
    ("linear-explicit", "0:(0) linear, 4:(8)", 6, [0, 2, 4, 6, 8, 8], {}),
    # seconds and beats: frame = round(seconds * fps); a beat is 60/bpm seconds
    ("seconds", "0:(0), 1s:(10)", 13, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10], {"fps": 10}),
    ("half-second", "0:(0), 0.5s:(5)", 7, [0, 1, 2, 3, 4, 5, 5], {"fps": 10}),
    ("seconds-round", "0:(0), 0.33s:(3)", 5, [0, 1, 2, 3, 3], {"fps": 10}),
    ("seconds-no-key-at-0", "1s:(4), 2s:(0)", 6, [4, 4, 4, 2, 0, 0], {"fps": 2}),
    ("beats", "0:(0), 2b:(10)", 12, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10], {"fps": 10, "bpm": 120}),
    ("beats-and-frames", "0:(0), 1b:(6), 9:(0)", 10, [0, 2, 4, 6, 5, 4, 3, 2, 1, 0], {"fps": 6, "bpm": 120}),
]

# Schedules dfm must refuse with a DfmError (Deforum keeps the last duplicate silently, or crashes).
ERROR_CASES: list = [  # (id, text, frames, kwargs), or a pytest.param of those
    ("duplicate-key", "0:(1), 0:(2)", 5, {}),
    ("duplicate-key-later", "0:(1), 10:(2), 10:(3)", 12, {}),
    ("duplicate-after-seconds", "0:(0), 1s:(1), 15:(2)", 20, {"fps": 15}),
    ("unknown-variable", "0:(foo)", 5, {}),
    ("unknown-function", "0:(bogus(t))", 5, {}),
    ("beats-without-bpm", "0:(0), 2b:(1)", 10, {"fps": 10}),
    ("empty-parens", "0:()", 5, {}),
    # Deforum hands inf to the warp; dfm stops with the frame (DFM402)
    ("division-by-zero", "0:(1/(t-3))", 6, {}),
    ("log-of-zero", "0:(log(t))", 3, {}),
]


# ---- the code under test ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluate():
    return evaluate_schedule_text


@pytest.fixture(scope="module")
def dfm_error():
    return DfmError


# ---- tests -----------------------------------------------------------------------------------------


def _params(cases: list) -> list:
    """Cases as pytest params, the first field becoming the test id; a known dfm/Deforum disagreement
    is a `pytest.param` carrying a strict xfail, so fixing it turns the suite red until the mark goes."""
    out = []
    for case in cases:
        values, marks = (case.values, case.marks) if hasattr(case, "marks") else (case, ())
        out.append(pytest.param(*values[1:], id=values[0], marks=marks))
    return out


def _case_id(case) -> str:
    return case.values[0] if hasattr(case, "marks") else case[0]



@pytest.mark.parametrize(("text", "frames"), _params(DEFORUM_CASES))
def test_deforum_parity(evaluate, text: str, frames: int) -> None:
    expected = deforum_reference(text, frames)
    got = np.asarray(evaluate(text, frames))
    assert got.dtype == np.float64
    assert got.shape == (frames,)
    # numexpr and numpy both compute in float64; allow only last-ulp differences of transcendentals.
    assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("text", "frames", "expected", "kwargs"), _params(HAND_CASES))
def test_dfm_semantics(evaluate, text: str, frames: int, expected: list[float], kwargs: dict) -> None:
    got = np.asarray(evaluate(text, frames, **kwargs))
    assert got.shape == (frames,)
    assert_allclose(got, np.asarray(expected, dtype=np.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("text", "frames", "kwargs"), _params(ERROR_CASES))
def test_bad_schedules_raise(evaluate, dfm_error, text: str, frames: int, kwargs: dict) -> None:
    with pytest.raises(dfm_error):
        evaluate(text, frames, **kwargs)


# Curves whose exact formula is dfm's choice: pin the properties every sensible easing has.
CURVE_N = 10  # segment 0 -> 10 over frames 0..10


def _curve(evaluate, word: str) -> np.ndarray:
    return np.asarray(evaluate(f"0:(0) {word}, {CURVE_N}:({CURVE_N})", CURVE_N + 3))


@pytest.mark.parametrize("word", ["linear", "ease_in", "ease_out", "ease_in_out", "cubic", "step"])
def test_curve_endpoints_and_hold(evaluate, word: str) -> None:
    v = _curve(evaluate, word)
    assert v[0] == 0
    assert_allclose(v[CURVE_N:], CURVE_N, rtol=0, atol=1e-12)  # reaches the key exactly and holds
    assert np.all(np.diff(v) >= -1e-12), f"{word} is not monotonic between two increasing keys: {v}"


def test_ease_in_below_and_ease_out_above_linear(evaluate) -> None:
    inner = np.arange(1, CURVE_N)
    ease_in, ease_out = _curve(evaluate, "ease_in"), _curve(evaluate, "ease_out")
    assert np.all(ease_in[inner] < inner), ease_in
    assert np.all(ease_out[inner] > inner), ease_out


@pytest.mark.parametrize("word", ["ease_in_out", "cubic"])
def test_symmetric_curves(evaluate, word: str) -> None:
    v = _curve(evaluate, word)[: CURVE_N + 1]
    # point symmetry about the segment's midpoint: v(k) + v(n - k) == n, so the midpoint is exactly n/2
    assert_allclose(v + v[::-1], CURVE_N, rtol=0, atol=1e-9)
    assert abs(v[CURVE_N // 2] - CURVE_N / 2) < 1e-9


def test_ease_in_out_is_flat_at_both_ends(evaluate) -> None:
    v = _curve(evaluate, "ease_in_out")
    assert v[1] - v[0] < 1 and v[CURVE_N] - v[CURVE_N - 1] < 1  # slower than linear at both keys


def test_cubic_passes_through_every_key(evaluate) -> None:
    v = np.asarray(evaluate("0:(0) cubic, 5:(10) cubic, 10:(0) cubic, 15:(10)", 16))
    assert_allclose(v[[0, 5, 10, 15]], [0, 10, 0, 10], rtol=0, atol=1e-12)


def test_curve_applies_only_to_its_segment(evaluate) -> None:
    v = np.asarray(evaluate("0:(0), 4:(8) ease_in_out, 8:(0), 12:(4)", 13))
    assert_allclose(v[:5], [0, 2, 4, 6, 8], rtol=0, atol=1e-12)  # before the curve: linear
    assert_allclose(v[8:], [0, 1, 2, 3, 4], rtol=0, atol=1e-12)  # after it: linear again


def test_seconds_and_frames_agree(evaluate) -> None:
    a = evaluate("0:(0), 2s:(1) ease_in_out, 4s:(0)", 80, fps=15)
    b = evaluate("0:(0), 30:(1) ease_in_out, 60:(0)", 80, fps=15)
    assert_allclose(a, b, rtol=0, atol=0)


# ---- the reference itself, pinned to the behaviours the notes verified on the notebook's stack ------

NOTEBOOK_VERIFIED: list[tuple[str, str, int, list[float]]] = [
    ("ramp", "0:(0), 10:(10)", 11, list(range(11))),
    ("1e-3-steps", "0:(1e-3), 6:(1)", 10, [0.001] * 6 + [1.0] * 4),
    ("dot5-lerps", "0:(.5), 6:(1.)", 10, [0.5 + k / 12 for k in range(7)] + [1.0] * 3),
    ("worked-example", "0:(0), 4:(t), 8:(2)", 12, [0, 1, 2, 3, 4, 5, 6, 7, 2, 2, 2, 2]),
    ("key-past-end", "0:(1), 20:(5)", 12, [1.0] * 12),
    ("max_frames", "0:(max_frames)", 12, [12.0] * 12),
    ("where", "0:(where(t>5, 1, 0))", 10, [0] * 6 + [1] * 4),
    ("t-mod-15", "0:(t%15)", 20, [t % 15 for t in range(20)]),
    ("trailing-space-holds", "0:(0 ), 4:(4)", 6, [0, 0, 0, 0, 4, 4]),
    ("separators-newline", "0:(1),\n4:(5)", 6, [1, 2, 3, 4, 5, 5]),
    ("separators-two-spaces", "0:(1),  6:(2)", 8, [1 + k / 6 for k in range(7)] + [2]),
    (
        "a1111-zoom",
        "0:(1.0025+0.002*sin(1.25*3.14*t/30))",
        4,
        [1.0025 + 0.002 * math.sin(1.25 * 3.14 * t / 30) for t in range(4)],
    ),
]


@pytest.mark.parametrize(
    ("text", "frames", "expected"), [c[1:] for c in NOTEBOOK_VERIFIED], ids=[c[0] for c in NOTEBOOK_VERIFIED]
)
def test_reference_matches_notebook_notes(text: str, frames: int, expected: list[float]) -> None:
    assert_allclose(deforum_reference(text, frames), expected, rtol=0, atol=1e-12)


def test_reference_zoom_first_values() -> None:
    # The notes round the A1111 zoom default to 1.0025, 1.00276, 1.00302, 1.00328; the fourth figure is a
    # linear extrapolation of the first three (sin is not linear): the true value is 1.003265 (by hand:
    # 1.0025 + 0.002*sin(0.3925) = 1.0025 + 0.002*0.38249).
    got = deforum_reference("0:(1.0025+0.002*sin(1.25*3.14*t/30))", 4)
    assert_allclose(got, [1.0025, 1.00276, 1.00302, 1.003265], rtol=0, atol=5e-6)


def test_reference_refuses_what_deforum_crashes_on() -> None:
    with pytest.raises(ValueError):
        deforum_reference("3:(5)", 8)  # no key at 0: UnboundLocalError in Deforum
    with pytest.raises(ValueError):
        deforum_reference("0 :(1)", 8)  # 'Key Frame string not correctly formatted'


def test_case_ids_are_unique() -> None:
    ids = [_case_id(c) for c in (*DEFORUM_CASES, *HAND_CASES, *ERROR_CASES)]
    assert len(ids) == len(set(ids))
    assert len(DEFORUM_CASES) + len(HAND_CASES) >= 60


def test_trailing_space_inside_a_key_does_not_change_its_meaning():
    """A deliberate choice (docs/language.md): number-or-expression depends on what is written, not on
    spaces, as in the A1111 extension (which strips them). The old notebook held `0 ` as an expression."""
    np.testing.assert_array_equal(evaluate_schedule_text("0:(0 ), 10:(10)", 12),
                                  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10])
