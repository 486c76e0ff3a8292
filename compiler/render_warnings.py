"""Warnings about what the render will do with a scene that compiles: diffused frames that run 0 steps
(DFM406), and prompt edits or alternations that never switch (DFM504)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from ..dsl import ir
from . import catalogue as cat
from . import prompt_syntax
from .context import SCENE_START
from .lower import cadence_plan, effective_steps, sampler_evaluations

if TYPE_CHECKING:
    from .context import CompileContext, Setting
    from .scene_prompts import PromptKey


def zero_step_frames(ctx: CompileContext, given: dict[str, Setting], schedule_statements: dict[str, ir.Statement],
                     settings: dict, values: dict[str, np.ndarray]) -> None:
    """Deforum's int((1 - strength) × steps) is kept, so with few steps a strength below 1 can round to
    0 steps (4 steps at 0.8): such a frame is not diffused at all. Say so, once, at the first one (from
    the schedules, as lower.py computes `effective_steps`, so that `dfm check` says it too)."""
    if not mode_of(settings["mode"]).uses_strength or settings["frames"] < 1 or ctx.has_errors:
        return  # stills and interpolation rows are full txt2img; an error (strength out of range) first
    strength = np.clip(values["strength"], 0.0, 1.0)
    with np.errstate(all="ignore"):
        eff = effective_steps(strength, values["steps"])
    cadence = mode_of(settings["mode"]).cadence(settings["cadence"])
    zero = cadence_plan(len(strength), cadence)[0] & (eff == 0) & (strength < 1.0)
    if not mode_of(settings["mode"]).reads_video and not settings["init_image"]:
        zero[0] = False  # frame 0 is txt2img: the full schedule
    if not zero.any():
        return
    f = int(np.argmax(zero))
    steps = int(values["steps"][f])
    st = schedule_statements.get("strength") or schedule_statements.get("steps")
    if st is None:
        st = given["model"].statement if "model" in given else None
    span = st.span if st is not None else SCENE_START
    fewest, most = _step_fixes(float(strength[f]), steps)
    raise_steps = f"raise `steps` (to {fewest} for this strength) or " if fewest else ""
    ctx.warn("DFM406", f"{int(zero.sum())} diffused frame(s) run 0 steps, the first at frame {f}: "
             f"int((1 - {strength[f]:g}) × {steps}) = 0, so it keeps the warped previous frame",
             span, parameter="strength", frame=f,
             help=f"{raise_steps}keep strength at or below {most:g} with {steps} steps")


def _step_fixes(strength: float, steps: int) -> tuple[int | None, float]:
    """The fixes for a frame that runs 0 steps, found with the same float64 arithmetic (1 - 0.8 is
    0.19999999999999996: 5 steps still run 0): the fewest steps that run one at this strength (None if
    none does), and the largest strength (in 0.001s) that runs one at these steps."""
    ns = np.arange(1, int(cat.BY_NAME["steps"].max) + 1)
    runs = effective_steps(np.full(len(ns), strength), ns) >= 1
    fewest = int(ns[np.argmax(runs)]) if runs.any() else None
    grid = np.round(np.arange(1000, -1, -1) / 1000, 3)
    most = float(grid[np.argmax(effective_steps(grid, np.full(len(grid), steps)) >= 1)])
    return fewest, most


def unreached_edits(ctx: CompileContext, prompt_keys: dict[str, list[PromptKey]], table: FrameTable) -> None:
    """A prompt whose editing or alternation never switches on some diffused frames it is in force
    (DFM504): A1111 counts the edit from the first step a frame runs, so an img2img frame that runs 8 of
    25 steps never reaches `[a:b:0.5]`. Said once per statement, with the first such frame."""
    cols = table.columns
    diffused = np.asarray(cols["diffused"], dtype=bool)
    evals = sampler_evaluations(str(table.settings.sampler), cols["steps"], cols["effective_steps"])
    for name, column, pieces in (("prompt", "prompt", "prompt_pieces"),
                                 ("negative", "negative_prompt", "negative_prompt_pieces")):
        for _, text, st in prompt_keys.get(name, []):
            rows = np.flatnonzero(diffused & (cols[column] == text))
            if not len(rows):
                continue
            values = cols[pieces][rows].tolist()
            switch = {v: prompt_syntax.first_switch(v) for v in set(values)}
            firsts = np.array([switch[v] if switch[v] is not None else -1 for v in values])
            edits = firsts >= 0
            never = edits & (firsts + 1 > evals[rows] - 1)  # evaluation first+1 is past the last one run
            if not never.any():
                continue
            f = int(rows[np.argmax(never)])
            ctx.warn("DFM504", f"the prompt's editing or alternation never switches on {int(never.sum())} of "
                     f"its {int(edits.sum())} diffused frame(s), the first at frame {f}: it runs "
                     f"{int(evals[f])} sampler evaluation(s) and the first switch comes after evaluation "
                     f"{int(firsts[np.argmax(never)])} (A1111 counts from the first step a frame runs)",
                     st.span, parameter=name, frame=f,
                     help="write the `when` as a step within what runs (`[a:b:2]`), or lower `strength` so "
                     "that more steps run")
