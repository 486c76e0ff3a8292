"""Time units: a time written in frames (`24`), seconds (`2s`) or beats (`8b`) as a frame count."""

from __future__ import annotations

import math

UNITS = ("f", "s", "b")


def frames_of(amount: float, unit: str, fps: float, bpm: float | None = None) -> int:
    """`amount` of `unit` in whole frames, rounded half up (Deforum's keys round the same way).

    Beats need `bpm` (the caller reports a scene without one). A time too large for any scene comes back
    as a count past every frame limit rather than overflowing, so callers bound it with one comparison."""
    if unit == "f":
        x = float(amount)
    elif unit == "s":
        x = float(amount) * fps
    elif unit == "b":
        if not bpm:
            raise ValueError("a time in beats needs a bpm")
        x = float(amount) * 60.0 / bpm * fps
    else:
        raise ValueError(f"unknown time unit {unit!r}")
    if not math.isfinite(x) or abs(x) >= 2**62:
        return 2**62 if x > 0 or math.isnan(x) else -(2**62)
    return int(math.floor(x + 0.5))
