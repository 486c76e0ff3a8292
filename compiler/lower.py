"""Lowering: checked settings + per-frame schedule values → the FrameTable the runtime executes.

Each function here computes one family of columns from plain values: prompts (hard cuts, ``--neg``,
crossfades, the weighted pieces of each text), seeds (Deforum's ``next_seed`` per diffused frame, or its
``seed_schedule``), cadence (which frames are diffused and each tween's weights, closing the tail),
effective steps (Deforum's float64 arithmetic).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping

import numpy as np

from ..contract import hybrid
from ..contract.modes import mode as mode_of
from ..contract.table import CAMERA_COLUMNS, FORMAT_VERSION, ColumnType, FrameTable, Settings
from . import catalogue as cat
from . import prompt_syntax as ps
from .expressions import environment, evaluate

Keyed = list[tuple[int, str]]  # (frame, text) keys, sorted by frame

NEG_MARKER = re.compile(r"--neg(?![A-Za-z0-9_])")


def split_neg(text: str) -> tuple[str, str]:
    """Deforum's `positive --neg negative` convention (`--negative` is not the marker). A second `--neg` is
    dropped and the negative parts joined as they stand, as Deforum joins them: `a --neg b --neg c` has the
    negative `b  c`."""
    parts = NEG_MARKER.split(text)
    if len(parts) == 1:
        return text.strip(), ""
    return parts[0].strip(), "".join(parts[1:]).strip()


def join_negatives(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def forward_fill(keys: list[tuple[int, str]], frames: int, default: str = "") -> np.ndarray:
    """Text per frame: each key holds from its frame on; before the first key, the first text."""
    out = np.empty(frames, dtype=object)
    if not keys:
        out[:] = default
        return out
    out[:] = keys[0][1]
    for f, text in keys:
        if f < frames:
            out[f:] = text
    return out


def crossfade(texts: np.ndarray, frames_of_fade: int) -> tuple[np.ndarray, np.ndarray]:
    """(text blended from, blend weight of the current text) per frame: after each change, the
    embedding moves from the old text to the new one over `frames_of_fade` frames."""
    n = len(texts)
    source = texts.copy()
    blend = np.ones(n, dtype=np.float64)
    if frames_of_fade <= 0:
        return source, blend
    for f in range(1, n):
        if texts[f] != texts[f - 1]:
            old = texts[f - 1]
            for j in range(frames_of_fade):
                if f + j >= n or (j > 0 and texts[f + j] != texts[f]):
                    break
                source[f + j] = old
                blend[f + j] = (j + 1) / (frames_of_fade + 1)
    return source, blend


def seed_sequence(start: int, behaviour: str, count: int, iter_n: int = 1) -> np.ndarray:
    """The seed of each of `count` diffusions, advanced as Deforum's next_seed does after each one."""
    seeds = np.empty(count, dtype=np.int64)
    seed, internal = int(start), 0
    for i in range(count):
        seeds[i] = seed
        if behaviour == "iter":
            if internal % iter_n == 0:
                seed += 1
            internal += 1
        elif behaviour in ("ladder", "alternate"):
            step_up = 2 if behaviour == "ladder" else 1
            seed, internal = (seed + step_up, 1) if internal == 0 else (seed - 1, 0)
        elif behaviour == "random":
            # Deforum seeds Python's RNG with the current seed before each frame, then draws the next one
            seed = random.Random(seed).randint(0, 2**32 - 1)
        seed %= 2**32
    return seeds


def scheduled_seeds(values: np.ndarray, start: int) -> np.ndarray:
    """Deforum's seed_schedule: the (truncated) value at each frame is that frame's seed. A value of −1, a
    new random seed on every run in Deforum, is a seed mixed from the start seed and the frame index
    (splitmix64), so the render is the same on every run and no frame's seed depends on another's."""
    seeds = np.asarray(values, dtype=np.int64).copy()
    drawn = seeds < 0
    if drawn.any():
        z = (np.uint64(int(start) % 2**32) << np.uint64(32)) | np.flatnonzero(drawn).astype(np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        seeds[drawn] = ((z ^ (z >> np.uint64(31))) >> np.uint64(32)).astype(np.int64)
    return seeds


def cadence_plan(frames: int, cadence: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(diffused, tween, tween_from, tween_to) per frame.

    Frames 0, c, 2c … are diffused. Frame j of the segment that starts at diffusion D_k shows
    D_{k-c} fading out and D_k fading in with weight (j - k + 1) / c, as in Deforum. Deforum never
    writes the last segment; dfm does, and compresses its weights so the final frame is D_last pure.
    """
    f = np.arange(frames)
    diffused = f % cadence == 0
    to = (f // cadence) * cadence
    last = to[-1] if frames else 0
    seg_len = np.where(to == last, frames - last, cadence)
    tween = (f - to + 1) / seg_len
    frm = np.where(to >= cadence, to - cadence, -1)
    tween = np.where(frm < 0, 1.0, tween)
    return diffused, tween.astype(np.float64), frm.astype(np.int64), to.astype(np.int64)


def effective_steps(strength: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Deforum's t_enc = int((1.0 - strength) * steps), in float64 (0.8 × 50 → 9, not 10)."""
    return np.trunc((1.0 - strength.astype(np.float64)) * steps.astype(np.float64)).astype(np.int64)


# each accumulated camera column and the motion schedule it adds up (zoom multiplies)
CAMERA_SCHEDULES = dict(zip(CAMERA_COLUMNS, ("angle", "zoom", "translation_x", "translation_y", "translation_z",
                                             "rotation_3d_x", "rotation_3d_y", "rotation_3d_z"), strict=True))


def accumulated_camera(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The camera after each frame's increment (for previews and Parseq export)."""
    return {col: (np.cumprod if name == "zoom" else np.cumsum)(values[name])
            for col, name in CAMERA_SCHEDULES.items()}


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_columns(prompts: Keyed, negatives: Keyed, frames: int) -> dict[str, np.ndarray]:
    positives = [(f, split_neg(t)) for f, t in prompts]
    pos = forward_fill([(f, p) for f, (p, _) in positives], frames)
    inline_neg = forward_fill([(f, n) for f, (_, n) in positives], frames)
    neg = forward_fill(negatives, frames)
    neg = np.array([join_negatives(a, b) for a, b in zip(neg, inline_neg, strict=True)], dtype=object)
    return {"prompt": pos, "negative_prompt": neg}


# the prompt text columns, each with its pieces column: the (text, weight) pieces the runtime encodes
PROMPT_TEXT_COLUMNS = ("prompt", "negative_prompt", "prompt_from", "negative_prompt_from")
PIECES_COLUMNS = tuple(f"{c}_pieces" for c in PROMPT_TEXT_COLUMNS)
COLUMN_ORDER = ("prompt", "negative_prompt", "prompt_from", "prompt_blend", "negative_prompt_from",
                "negative_blend", "seed", "diffused", "effective_steps", "tween", "tween_from", "tween_to",
                *PIECES_COLUMNS, "unet_evals")


def pieces_columns(cols: dict[str, np.ndarray], env: Mapping[str, float | np.ndarray] | None = None,
                   parts: dict[str, tuple[int, bool]] | None = None, multiplier: int = 1) -> dict[str, np.ndarray]:
    """Each prompt text column's pieces (`prompt_syntax.table_pieces`) for its row's `steps` × `multiplier`
    (`catalogue.step_multiplier` of the sampler: A1111 schedules a second-order sampler over twice the steps).

    A text is read once per distinct (text after backtick substitution, steps) pair, and a text whose
    value cannot depend on the row (no backticks, no `AND`/weight, no `[`) once: a 10,000-frame scene of
    plain prompts costs what it did before composable prompts. Backtick expressions are evaluated with
    `env` (the scene's constants and audio features) at each row's frame; a value that is not finite
    raises PromptValueError, which the compiler reports at the expression. `parts`, when given, receives
    `prompt_syntax.conditional_parts` of each composite value (what `unet_evals` needs, without re-reading
    the JSON)."""
    steps = (cols["steps"].astype(np.int64) * int(multiplier)).tolist()
    frames = cols["frame"]
    parsed: dict[tuple, str] = {}
    substituted: dict[tuple, list[str]] = {}  # prompt and prompt_from share most rows' texts
    out = {}
    for name in PROMPT_TEXT_COLUMNS:
        negative = name.startswith("negative")
        texts = cols[name].tolist()
        fixed: dict[str, str] = {}  # texts whose value is the same on every row
        varying: dict[str, list[int]] = {}  # the others, with their rows
        for t in set(texts):
            if "`" in t or "[" in t or (not negative and _composable(t)):
                varying[t] = []
            else:
                key = (t, None, negative)
                if key not in parsed:
                    parsed[key] = ps.table_pieces(t, 1, negative)
                fixed[t] = parsed[key]
        if not varying:
            out[f"{name}_pieces"] = ColumnType.TEXT.array([fixed[t] for t in texts])
            continue
        for i, t in enumerate(texts):
            if t in varying:
                varying[t].append(i)
        column = [fixed.get(t) for t in texts]
        for t, rows in varying.items():
            subst = None
            if "`" in t:
                at = np.asarray(rows)
                memo = (t, at.tobytes())
                subst = substituted.get(memo)
                if subst is None:
                    subst = substituted[memo] = _substituted(t, at, frames, env)
            for k, i in enumerate(rows):
                text = subst[k] if subst is not None else t
                key = (text, steps[i], negative)
                value = parsed.get(key)
                if value is None:
                    value = parsed[key] = ps.table_pieces(text, steps[i], negative)
                    if parts is not None and ps.is_composite(value) and value not in parts:
                        split = [(text, 1.0)] if negative else ps.split_and(text)
                        parts[value] = (len(split), len(split) != 1 or split[0][1] != 1.0)
                column[i] = value
        out[f"{name}_pieces"] = ColumnType.TEXT.array(column)
    return out


def _composable(text: str) -> bool:
    """A positive text A1111 splits or weighs as composable (`AND`, or a trailing `:weight`)."""
    parts = ps.split_and(text)
    return len(parts) > 1 or parts[0][1] != 1.0


class PromptValueError(ValueError):
    """A backtick expression is not finite at a frame: the compiler turns it into a diagnostic."""

    def __init__(self, expression: str, frame: int, value: float):
        super().__init__(f"`{expression}` is {value} at frame {frame}")
        self.expression, self.frame, self.value = expression, frame, value


def _substituted(text: str, rows: np.ndarray, frames: np.ndarray, env: Mapping | None) -> list[str]:
    """`text` on each of `rows`, every backtick expression replaced by its value at the row's frame."""
    scope = dict(env or {})
    t = frames[rows].astype(np.float64)
    for k, v in scope.items():  # per-frame variables (audio) at the rows' frames, the last one past their end
        if isinstance(v, np.ndarray) and len(v):
            scope[k] = v[np.minimum(frames[rows], len(v) - 1)]
    scope["t"] = t
    ticks = ps.backticks(text)
    columns = []
    for _, _, source in ticks:
        expr = ps.backtick_expression(source)
        if expr is None:  # the compiler has reported it; Deforum would fail, dfm encodes the text
            columns.append(None)
            continue
        values = np.broadcast_to(np.asarray(evaluate(expr, scope), dtype=np.float64), t.shape)
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            raise PromptValueError(source, int(frames[rows][k]), float(values[k]))
        columns.append(values.tolist())
    return [ps.substitute(text, [None if c is None else c[k] for c in columns], ticks) for k in range(len(rows))]


def sampler_evaluations(sampler: str, steps: np.ndarray, effective: np.ndarray) -> np.ndarray:
    """The UNet evaluations (sampler calls of the eps function) of a denoise of `effective` of `steps` steps,
    as diffusers' schedulers run them: 2n - 1 for a second-order sampler (its last step is a first-order
    one, as in k-diffusion), n + 1 for PLMS's warm-up once the schedule has 2 steps or more, else n; 0 for 0."""
    n = np.asarray(effective, dtype=np.int64)
    if sampler in cat.SECOND_ORDER_SAMPLERS:
        return np.where(n > 0, 2 * n - 1, 0)
    if sampler in cat.WARMUP_SAMPLERS:
        return n + ((n > 0) & (np.asarray(steps) >= 2)).astype(np.int64)
    return n


UNCOND_RULES = ("sd", "cfg", "never", "flux")


def unet_evals(cols: dict[str, np.ndarray], parts: dict[str, tuple[int, bool]] | None = None,
               sampler: str = "euler", uncond: str = "sd") -> np.ndarray:
    """UNet batch items per row (docs/frametable.md): the sampler's evaluations of the row
    (`sampler_evaluations` of its effective_steps) × (conditional parts evaluated per step + 1 when the
    unconditional pass is needed); 0 on rows that are not diffused. `parts`: what `pieces_columns` found of
    each composite value (else each is read from its JSON). `uncond`, when the model runs the unconditional
    pass: "sd" above cfg 1 or for a weighted composite prompt (A1111's rule), "cfg" above cfg 1 only (SD3 /
    SD3.5: below it the parts are a blend), "never" (a guidance-embedded LCM: the scale is an input), "flux"
    (the scale is an input; a negative prompt runs a pass above `true_cfg_scale` 1)."""
    parts = parts or {}
    eff = np.where(cols["diffused"], cols["effective_steps"], 0).astype(np.int64)
    eff = sampler_evaluations(sampler, cols["steps"], eff)
    cfg = cols["cfg_scale"].astype(np.float64)
    if uncond == "flux":
        true_cfg = np.asarray(cols["true_cfg_scale"], dtype=np.float64)
        guided = (true_cfg > 1.0) & (np.asarray(cols["negative_prompt"], dtype=object) != "")
    else:
        guided = (cfg > 1.0) & (uncond != "never")
    pos, frm = cols["prompt_pieces"], cols["prompt_from_pieces"]
    if not any(ps.is_composite(v) for v in set(pos.tolist()) | set(frm.tolist())):  # plain prompts: 1 part
        return eff * (1 + guided).astype(np.int64)
    info: dict[str, tuple[int, bool, bool]] = {}

    def read(v: str) -> tuple[int, bool, bool]:
        got = info.get(v)
        if got is None:
            n, weighted = parts[v] if v in parts else ps.conditional_parts(v)
            got = info[v] = (n, ps.is_composite(v), weighted)
        return got

    per_step = np.empty(len(eff), dtype=np.int64)
    blend, from_text = cols["prompt_blend"], cols["prompt_from"]
    for i, (p, f) in enumerate(zip(pos.tolist(), frm.tolist(), strict=True)):
        n, composite, guides = read(p)
        if from_text[i] and blend[i] < 1.0:
            fn, fcomposite, fguides = read(f)
            n = 1 if not composite and not fcomposite else n + fn
            guides = guides or fguides
        elif not composite:
            n = 1
        per_step[i] = n + int(guided[i] or (guides and uncond == "sd"))
    return eff * per_step


def frame_rows(settings: Settings, values: dict[str, np.ndarray], prompts: Keyed, negatives: Keyed
               ) -> dict[str, np.ndarray]:
    """The table's rows as the scene's mode lays them out (stills: a row per image; interpolation: the frames
    between prompts; else the animation's frames), with the schedules, prompts, seeds, steps and cadence
    columns: what `build_table` completes, and what the check's render warnings read without building it."""
    mode = mode_of(settings.mode)
    if not mode.animated:
        return _stills(settings, values, prompts, negatives)
    if mode.between_prompts:
        return _interpolation(settings, values, prompts, negatives)
    return _animation(settings, values, prompts, negatives)


def build_table(settings: Settings, values: dict[str, np.ndarray], prompts: Keyed, negatives: Keyed, *,
                source: str = "", path: str = "", env: Mapping[str, float | np.ndarray] | None = None,
                uncond: str = "sd") -> FrameTable:
    """The FrameTable of a scene from plain inputs: resolved settings, every schedule's per-frame values
    (one array per catalogue schedule, `settings.frames` long) and the prompt keys. `env`: what backtick
    expressions in prompts may read (the compiler's; by default the scene's constants). `uncond`: when the
    model family runs an unconditional pass (`unet_evals`)."""
    cols = frame_rows(settings, values, prompts, negatives)
    cols["time"] = cols["frame"] / float(settings.fps)
    if env is None:
        env = environment(settings.frames, settings.fps, settings.bpm, settings.seed)
    parts: dict[str, tuple[int, bool]] = {}
    cols.update(pieces_columns(cols, env, parts, cat.step_multiplier(settings.sampler)))
    cols["unet_evals"] = unet_evals(cols, parts, settings.sampler, uncond)
    order = ["frame", "time", *[p.name for p in cat.SCHEDULES], *COLUMN_ORDER]
    ordered = {k: cols[k] for k in order if k in cols}  # a ControlNet unit's columns only when it is active
    ordered.update({k: v for k, v in cols.items() if k not in ordered})
    # when each column is read and what each setting changes: the catalogue's rows, for the dependency rule
    return FrameTable(ordered, settings, source_hash=source_hash(source), source_path=path,
                      format_version=FORMAT_VERSION, column_reads=cat.column_reads(),
                      setting_effects=cat.setting_effects())


def _schedule_columns(values: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each catalogue schedule at the given rows, typed by its row (Deforum casts with int(): truncation)."""
    out = {}
    for p in cat.SCHEDULES:
        if p.name not in values:  # an inactive ControlNet unit's schedule
            continue
        col = values[p.name][rows]
        t = p.column_type
        if t is ColumnType.INT:
            col = np.trunc(col)
        elif t is ColumnType.BOOL:
            col = col != 0
        out[p.name] = t.array(col)
    return out


def _animation(s: Settings, values: dict[str, np.ndarray], prompts: Keyed, negatives: Keyed
               ) -> dict[str, np.ndarray]:
    n = s.frames
    frames = np.arange(n)
    cols = _schedule_columns(values, frames)
    cols["frame"] = frames.astype(np.int64)
    cols.update(prompt_columns(prompts, negatives, n))
    cols["prompt_from"], cols["prompt_blend"] = crossfade(cols["prompt"], s.prompt_crossfade)
    cols["negative_prompt_from"], cols["negative_blend"] = crossfade(cols["negative_prompt"], s.prompt_crossfade)
    cadence = mode_of(s.mode).cadence(s.cadence)
    diffused, tween, frm, to = cadence_plan(n, cadence)
    # a tween shows the diffusion at tween_to: give it that diffusion's seed
    if s.seed_behavior == "schedule":
        cols["seed"] = scheduled_seeds(cols["seed_schedule"], s.seed)[to]
    else:
        seeds = seed_sequence(s.seed, s.seed_behavior, int(diffused.sum()), s.seed_iter_n)
        cols["seed"] = seeds[(np.cumsum(diffused) - 1)[to]]
    steps = cols["steps"]
    eff = effective_steps(cols["strength"], steps)
    if not mode_of(s.mode).reads_video:  # video input img2imgs frame 0 like the others
        if s.init_image or (mode_of(s.mode).camera and hybrid.starts_from_video(s)):
            init_strength = s.init_strength if s.init_strength is not None else cols["strength"][0]
            eff[0] = effective_steps(np.array([init_strength]), steps[:1])[0]
        else:
            eff[0] = steps[0]  # txt2img: the full schedule
    cols["effective_steps"] = np.where(diffused, eff, 0).astype(np.int64)
    cols["diffused"], cols["tween"], cols["tween_from"], cols["tween_to"] = diffused, tween, frm, to
    cols.update(accumulated_camera(values))
    return cols


def _independent_txt2img_rows(cols: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """Every row a full txt2img of its own: no cadence, no previous frame."""
    cols["diffused"] = np.ones(count, dtype=bool)
    cols["effective_steps"] = cols["steps"].copy()
    cols["tween"] = np.ones(count)
    cols["tween_from"] = np.full(count, -1, dtype=np.int64)
    cols["tween_to"] = np.arange(count, dtype=np.int64)
    return cols


def _stills(s: Settings, values: dict[str, np.ndarray], prompts: Keyed, negatives: Keyed
            ) -> dict[str, np.ndarray]:
    """One row per image: each prompt × images_per_prompt, seeds advancing per image."""
    per = int(s.images_per_prompt)
    frames_of = [f for f, _ in prompts]
    count = len(prompts) * per
    neg_at = forward_fill(negatives, max(frames_of) + 1 if frames_of else 1)
    rows = np.array([min(f, len(values["steps"]) - 1) for f in frames_of for _ in range(per)], dtype=np.int64)
    cols = _schedule_columns(values, rows)
    pos, negs = [], []
    for f, text in prompts:
        p, inline = split_neg(text)
        for _ in range(per):
            pos.append(p)
            negs.append(join_negatives(neg_at[f], inline))
    cols["frame"] = np.arange(count, dtype=np.int64)
    cols["prompt"] = np.array(pos, dtype=object)
    cols["negative_prompt"] = np.array(negs, dtype=object)
    cols["prompt_from"], cols["prompt_blend"] = cols["prompt"].copy(), np.ones(count)
    cols["negative_prompt_from"], cols["negative_blend"] = cols["negative_prompt"].copy(), np.ones(count)
    cols["seed"] = seed_sequence(s.seed, s.seed_behavior, count, s.seed_iter_n)
    return _independent_txt2img_rows(cols, count)


def _interpolation(s: Settings, values: dict[str, np.ndarray], prompts: Keyed, negatives: Keyed
                   ) -> dict[str, np.ndarray]:
    """Every row a txt2img with the same seed; the embedding moves between consecutive prompts.

    With interpolate_key_frames, rows are frames 0..last key and the blend follows the key frames;
    otherwise interpolate_x_frames rows sit between each pair. Every pair is rendered (Deforum's
    for/else bug renders only the last) and negatives are blended too (Deforum ignores them)."""
    pos_keys = [(f, split_neg(t)) for f, t in prompts]
    neg_ff = forward_fill(negatives, max([f for f, _ in pos_keys] + [0]) + 1)
    texts = [(f, p, join_negatives(neg_ff[f], n)) for f, (p, n) in pos_keys]
    rows: list[tuple[int, int, float]] = []  # (index of from-prompt, index of to-prompt, blend)
    if s.interpolate_key_frames:
        for i in range(len(texts) - 1):
            a, b = texts[i][0], texts[i + 1][0]
            rows += [(i, i + 1, (f - a) / (b - a)) for f in range(a, b)]
    else:
        x = int(s.interpolate_x_frames)
        for i in range(len(texts) - 1):
            rows += [(i, i + 1, j / (x + 1)) for j in range(x + 1)]
    last = len(texts) - 1
    rows.append((last, last, 1.0))
    count = len(rows)
    frame_rows = np.minimum(np.arange(count), len(values["steps"]) - 1)
    cols = _schedule_columns(values, frame_rows)
    cols["frame"] = np.arange(count, dtype=np.int64)
    frm = [texts[a] for a, _, _ in rows]
    to = [texts[b] for _, b, _ in rows]
    blend = np.array([w if a != b else 1.0 for a, b, w in rows], dtype=np.float64)
    # the row's "current" prompt is the one it moves towards; blend 0 means the from-prompt alone
    cols["prompt"] = np.array([t[1] for t in to], dtype=object)
    cols["prompt_from"] = np.array([t[1] for t in frm], dtype=object)
    cols["negative_prompt"] = np.array([t[2] for t in to], dtype=object)
    cols["negative_prompt_from"] = np.array([t[2] for t in frm], dtype=object)
    cols["prompt_blend"] = blend
    cols["negative_blend"] = blend.copy()
    cols["seed"] = np.full(count, int(s.seed), dtype=np.int64)
    return _independent_txt2img_rows(cols, count)
