"""Warnings about what the render will do with a scene that compiles: diffused frames that run 0 steps
(DFM406), and prompt edits or alternations that never switch (DFM504). `dfm check` builds no FrameTable,
yet says both: DFM406 from the schedules, DFM504 from `edit_columns`, only the rows a bracket could need."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..contract import hybrid
from ..contract.modes import mode as mode_of
from ..contract.table import Settings
from ..dsl import ir
from . import catalogue as cat
from . import prompt_syntax
from .context import SCENE_START
from .lower import (
    NEG_MARKER,
    cadence_plan,
    effective_steps,
    frame_rows,
    pieces_columns,
    sampler_evaluations,
    split_neg,
)
from .string_spans import string_span

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
    from_video = mode_of(settings["mode"]).camera and hybrid.starts_from_video(settings)
    if not mode_of(settings["mode"]).reads_video and not settings["init_image"] and not from_video:
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


# the prompt statements, the table column each one fills and that column's pieces column
_PROMPT_COLUMNS = (("prompt", "prompt", "prompt_pieces"), ("negative", "negative_prompt", "negative_prompt_pieces"))


def _in_column(name: str, text: str) -> str:
    """A statement's text as its column holds it: a prompt's part before `--neg` (the rest goes to the negative
    column, joined with the negative in force)."""
    return split_neg(text)[0] if name == "prompt" else text


def edit_columns(settings: Settings, values: dict[str, np.ndarray], prompt_keys: dict[str, list[PromptKey]],
                 env: Mapping[str, float | np.ndarray]) -> dict[str, np.ndarray] | None:
    """What `unreached_edits` reads of the FrameTable, without building it (`dfm check`): the rows from
    lower.py's own functions, and the pieces only of the diffused rows whose prompt text has a bracket
    (elsewhere ""). None when no prompt text has one: nothing can switch, and nothing is computed. Raises
    lower.PromptValueError as the lowering does."""
    keyed = {column: {_in_column(name, t) for _, t, _ in prompt_keys.get(name, []) if "[" in t}
             for name, column, _ in _PROMPT_COLUMNS}
    if not any(keyed.values()):
        return None
    prompts = [(f, t) for f, t, _ in prompt_keys.get("prompt", [])]
    negatives = [(f, t) for f, t, _ in prompt_keys.get("negative", [])]
    cols = frame_rows(settings, values, prompts, negatives)
    n = len(cols["frame"])
    need = np.zeros(n, dtype=bool)
    for column, texts in keyed.items():
        if texts:
            need |= np.fromiter((t in texts for t in cols[column].tolist()), dtype=bool, count=n)
    rows = np.flatnonzero(need & np.asarray(cols["diffused"], dtype=bool))
    sub = {k: cols[k][rows] for k in ("steps", "frame", "prompt", "negative_prompt")}
    sub["prompt_from"] = sub["negative_prompt_from"] = np.full(len(rows), "", dtype=object)
    got = pieces_columns(sub, env, None, cat.step_multiplier(settings.sampler))
    for _, _, pieces in _PROMPT_COLUMNS:
        cols[pieces] = np.full(n, "", dtype=object)
        cols[pieces][rows] = got[pieces]
    return cols


def unreached_edits(ctx: CompileContext, prompt_keys: dict[str, list[PromptKey]], cols: Mapping[str, np.ndarray],
                    sampler: str) -> None:
    """A prompt whose editing or alternation never switches on some diffused frames it is in force
    (DFM504): A1111 counts the edit from the first step a frame runs, so an img2img frame that runs 8 of
    25 steps never reaches `[a:b:0.5]`. Said once per statement and part (a prompt's `--neg` part is read
    from the negative column on the prompt's rows), with the first such frame, at the bracket that switches
    first. `cols`: the FrameTable's columns, or `edit_columns`."""
    diffused = np.asarray(cols["diffused"], dtype=bool)
    evals = sampler_evaluations(sampler, cols["steps"], cols["effective_steps"])
    for name, column, pieces in _PROMPT_COLUMNS:
        # no bracket, no editing or alternation (a backtick's number never makes one); the diffused rows of
        # each text found in one pass, not one pass per statement
        wanted = {_in_column(name, text) for _, text, _ in prompt_keys.get(name, []) if "[" in text}
        rows_of: dict[str, list[int]] = {}
        for i in np.flatnonzero(diffused).tolist() if wanted else ():
            text = cols[column][i]
            if text in wanted:
                rows_of.setdefault(text, []).append(i)
        for _, text, st in prompt_keys.get(name, []):
            rows = np.asarray(rows_of.get(_in_column(name, text), ()), dtype=np.int64)
            if not len(rows):
                continue
            parts = [(pieces, False)]
            if name == "prompt" and "[" in split_neg(text)[1]:
                parts.append(("negative_prompt_pieces", True))
            for part_pieces, negative in parts:
                _warn_unreached(ctx, name, st, cols, part_pieces, rows, evals, sampler, negative)


def _warn_unreached(ctx: CompileContext, name: str, st: ir.Statement, cols: Mapping[str, np.ndarray], pieces: str,
                    rows: np.ndarray, evals: np.ndarray, sampler: str, negative: bool) -> None:
    values = cols[pieces][rows].tolist()
    switch = {v: prompt_syntax.first_switch(v) for v in set(values)}
    firsts = np.array([switch[v] if switch[v] is not None else -1 for v in values])
    edits = firsts >= 0
    never = edits & (firsts + 1 > evals[rows] - 1)  # evaluation first+1 is past the last one run
    if not never.any():
        return
    f = int(rows[np.argmax(never)])
    steps = int(cols["steps"][f]) * cat.step_multiplier(sampler)
    what = "the `--neg` part's" if negative else "the prompt's"
    ctx.warn("DFM504", f"{what} editing or alternation never switches on {int(never.sum())} of "
             f"its {int(edits.sum())} diffused frame(s), the first at frame {f}: it runs "
             f"{int(evals[f])} sampler evaluation(s) and the first switch comes after evaluation "
             f"{int(firsts[np.argmax(never)])} (A1111 counts from the first step a frame runs)",
             _bracket_span(ctx.scene.source, name, st, steps, negative), parameter=name, frame=f,
             help="write the `when` as a step within what runs (`[a:b:2]`), or lower `strength` so "
             "that more steps run")


def _bracket_span(source: str, name: str, st: ir.Statement, steps: int, negative: bool = False) -> ir.Span:
    """The bracket of the statement's text whose switch comes first at `steps` steps (over the sub-prompts
    of the native form; in a prompt's `--neg` part with `negative`), else the statement."""
    text = st.args[-1]
    strings = [p.text for p in text.parts] if isinstance(text, ir.Composite) else [text]
    best = None
    for s in strings:
        if not isinstance(s, ir.String):
            continue
        value, offset = s.value, 0
        if name == "prompt":  # the prompt column is the part before `--neg`, the negative column the rest
            marker = NEG_MARKER.search(value)
            if negative:
                if marker is None:
                    continue
                value, offset = value[marker.end():], marker.end()
            elif marker is not None:
                value = value[:marker.start()]
        found = prompt_syntax.first_switch_bracket(value, steps)
        if found is not None and (best is None or found[2] < best[0][2]):
            best = ((found[0] + offset, found[1] + offset, found[2]), s)
    if best is None:
        return st.span
    (start, end, _), s = best
    return string_span(source, s, start, end)
