"""Schedules: resolved keyframes → one float64 value per frame, with Deforum's exact semantics.

- Between plain-number keys values interpolate (linearly unless the key names a curve).
- An expression key is re-evaluated on every frame from its key until the next key (`t` = frame).
- A number key followed by an expression key interpolates towards the expression's value at its key.
- The last value holds to the end; keys at or past the frame count take no part.
- dfm's addition: before the first key its value holds (Deforum crashes when frame 0 has no key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..dsl import ir
from .expressions import evaluate_frames

CURVES = ("linear", "step", "ease_in", "ease_out", "ease_in_out", "cubic")


@dataclass(frozen=True)
class ResolvedKey:
    frame: int
    value: ir.Expr
    curve: str = "linear"
    is_number: bool = True  # Deforum's plain-number key (interpolates); else an expression key (evaluated)
    span: ir.Span = ir.NO_SPAN
    explicit_curve: bool = False


def ease(curve: str, w: np.ndarray) -> np.ndarray:
    """Fraction of the way from one key to the next at position w in [0, 1)."""
    if curve == "step":
        return np.zeros_like(w)
    if curve == "ease_in":
        return w**3
    if curve == "ease_out":
        return 1 - (1 - w) ** 3
    if curve == "ease_in_out":
        return np.where(w < 0.5, 4 * w**3, 1 - (-2 * w + 2) ** 3 / 2)
    return w


def _catmull_rom(p0: float, p1: float, p2: float, p3: float, w: np.ndarray) -> np.ndarray:
    return 0.5 * (2 * p1 + (-p0 + p2) * w + (2 * p0 - 5 * p1 + 4 * p2 - p3) * w**2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * w**3)


def evaluate_keys(keys: list[ResolvedKey], frames: int, env: Mapping[str, float]) -> np.ndarray:
    """One value per frame (float64) from keys already sorted by frame. Overflows become inf or nan
    quietly: the compiler reports every non-finite frame as a diagnostic (DFM402)."""
    with np.errstate(all="ignore"):
        return _evaluate_keys(keys, frames, env)


def _evaluate_keys(keys: list[ResolvedKey], frames: int, env: Mapping[str, float]) -> np.ndarray:
    keys = [k for k in keys if 0 <= k.frame < frames]
    out = np.empty(frames, dtype=np.float64)
    if not keys:
        raise ValueError("a schedule needs at least one key inside the scene")
    # value of each key at its own frame: the interpolation anchors
    anchors = [float(evaluate_frames(k.value, env, k.frame, k.frame + 1)[0]) for k in keys]
    out[: keys[0].frame] = anchors[0]
    for i, k in enumerate(keys):
        stop = keys[i + 1].frame if i + 1 < len(keys) else frames
        if stop <= k.frame:
            continue
        if not k.is_number:
            out[k.frame:stop] = evaluate_frames(k.value, env, k.frame, stop)
            continue
        if i + 1 >= len(keys):
            out[k.frame:stop] = anchors[i]  # the last value holds
            continue
        span = stop - k.frame
        w = np.arange(span, dtype=np.float64) / span
        v0, v1 = anchors[i], anchors[i + 1]
        if k.curve == "cubic":
            p0 = anchors[i - 1] if i > 0 else v0
            p3 = anchors[i + 2] if i + 2 < len(keys) else v1
            out[k.frame:stop] = _catmull_rom(p0, v0, v1, p3, w)
        elif k.curve == "linear":
            # the same arithmetic as numpy.interp (what pandas' linear fill runs), for bit parity
            slope = (v1 - v0) / span
            out[k.frame:stop] = slope * np.arange(span, dtype=np.float64) + v0
            out[k.frame] = v0  # exact at the key, even when the next anchor is infinite
        else:
            out[k.frame:stop] = v0 + (v1 - v0) * ease(k.curve, w)
        out[k.frame] = v0
    return out
