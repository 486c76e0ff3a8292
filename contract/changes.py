"""Which frames an edit can change: the dependency rule that incremental re-render and `dfm diff` share.

Numpy only, next to the table it reads (`contract/table.py`): the runtime imports it without knowing the
compiler, and `dfm diff` without loading torch. Two tables are compared column by column and setting by
setting; the rule below turns their differences into the frames whose renders can differ.

**What the renderer reads at row i** (`RowReads`; the render loop hands each frame only these columns, so
the rule cannot miss a read). Each column says when it is read (contract/reads.py): a parameter's column in
its catalogue row, which the compiler hands over in the table (`FrameTable.column_reads`), a derived column
in `table.DERIVED`. A column no rule names counts as read on every row. The rows that read a column:

- `every`: every row (the cadence plan: `diffused`, `tween`, `tween_from`, `tween_to`);
- `diffused`: a diffused row (what the diffusion uses: the prompts, their pieces and blends, `clip_skip`,
  `seed`, `subseed`, `steps`, `effective_steps`, `cfg_scale`, `lora_weights`). The LoRA files themselves are
  the settings `lora` and `embedding` (a change renders every frame), and their contents are in the render's
  fingerprint. Weights that become, or stop being, the same on every row change every frame too: the
  runtime fuses constant LoRAs into the UNet, which gives other bits (`lora_fused`);
- `motion`: in a mode with a camera (contract/modes.py), every row after the first: the mode's motion (it
  warps the diffusions still blended); row 0 has no previous frame;
- `init`: in a mode with a camera, a diffused row after the first: the image effects on the warped previous
  frame;
- `never`: `frame`, `time`, the accumulated camera `cam_*` (previews and exports), `strength` and
  `seed_schedule` (the renderer reads `effective_steps` and `seed`, which the compiler derives from them),
  `near` and `far`. A row's `modes` and `only_if` narrow it further: the other mode's motion and the
  perspective-flip angles while `perspective_flip` is off are never read.

**What a frame depends on**:

- in a mode with a camera (`2d`, `3d`): the values read at its own row and at every earlier row. Each
  diffusion starts from the previous one warped through every frame since, and the colour reference is the
  first warped frame, so a frame depends on the whole past. It depends on no later row: the diffusion at row
  N first shows at frame N, as the newer half of its blend (Deforum's cadence indexing), and a tween blends
  only diffusions at or before it. So the first row whose read values differ is the first frame that can
  change, and every frame from it on can change;
- in the other modes (`none`, `interpolation`, `video`): only the values read at its own row (each is a
  txt2img from noise, or an img2img of its own input frame);
- in every mode: the static settings the renderer reads. Each setting says what a change of it can change
  (its catalogue row's `effect`, handed over in `FrameTable.setting_effects`): every frame (the model, size,
  sampler, mode, border, colour coherence, ...; also any setting no rule names), the video file and no frame
  (fps, the soundtrack), or nothing by itself (`seed`, `cadence`, `frames`, ...: the compiler turned them
  into columns, which are compared themselves).

Values are compared exactly (floats by their bits): a value that changes in the last digit counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .modes import MODES
from .reads import Read
from .table import FrameTable


def is_camera_mode(name: object) -> bool:
    """Whether frames of mode `name` start from the previous frame moved by a camera (a name that is no mode:
    no)."""
    found = MODES.get(str(name))
    return found is not None and found.camera


class RowReads:
    """The columns the renderer reads at each row of `table` (see the module docstring)."""

    def __init__(self, table: FrameTable) -> None:
        self.table = table
        self.diffused = np.asarray(table.columns["diffused"], dtype=bool) if "diffused" in table else \
            np.ones(len(table), dtype=bool)
        self.n = len(table)
        groups: dict[Read, list[str]] = {when: [] for when in Read}
        for name in table.names:
            groups[self.when(name)].append(name)
        every, diffused = tuple(groups[Read.EVERY]), tuple(groups[Read.DIFFUSED])
        later, effects = tuple(groups[Read.MOTION]), tuple(groups[Read.INIT])
        # (first row?, diffused?) -> the columns read
        self._at = {(True, False): every, (True, True): every + diffused, (False, False): every + later,
                    (False, True): every + diffused + later + effects}

    def when(self, column: str) -> Read:
        """When `column` is read in this table's scene."""
        return self.table.read_of(column).in_scene(self.table.settings)

    def at(self, i: int) -> tuple[str, ...]:
        """The columns read at row i."""
        return self._at[(i == 0, bool(self.diffused[i]))]

    def mask(self, column: str) -> np.ndarray:
        """One bool per row: whether `column` is read there."""
        when = self.when(column)
        rows = np.arange(self.n)
        return {
            Read.EVERY: np.ones(self.n, dtype=bool),
            Read.DIFFUSED: self.diffused.copy(),
            Read.MOTION: rows >= 1,
            Read.INIT: self.diffused & (rows >= 1),
            Read.NEVER: np.zeros(self.n, dtype=bool),
        }[when]


def lora_fused(table: FrameTable) -> bool:
    """Whether the runtime fuses the table's LoRAs into the UNet (runtime/networks.py): its `lora_weights`
    are the same on every row and weigh some LoRA's UNet. A table that changes this renders every frame
    again, even where its weights are those of the other."""
    if "lora_weights" not in table or not table.settings.get("lora"):
        return False
    cells = set(map(str, table.columns["lora_weights"].tolist()))
    if len(cells) != 1:
        return False
    try:
        return any(float(pair[0]) != 0 for pair in json.loads(next(iter(cells))))
    except (ValueError, TypeError, IndexError):
        return False  # malformed: the runtime refuses it


def setting_effect(old: FrameTable, new: FrameTable, name: str) -> str:
    """What a change of static setting `name` between `old` and `new` can change: "frames" (every frame),
    "video" (the video file only) or "none" (nothing by itself: its effect, if any, is in the columns). The
    new table's rule, else the old one's (a setting only the old scene had)."""
    rules = new if name in new.setting_effects or name not in old.setting_effects else old
    return rules.effect_of(name).value


@dataclass(frozen=True)
class ColumnChange:
    """A column whose values differ between two tables."""

    column: str
    rows: np.ndarray  # rows both tables have where the values differ
    read: np.ndarray  # those of `rows` the renderer reads: the ones that can change a frame


@dataclass(frozen=True)
class SettingChange:
    name: str
    old: object
    new: object
    effect: str  # "frames", "video" or "none" (setting_effect)


@dataclass(frozen=True)
class Changes:
    """The differences between the table of a render (`old`) and a new one, and the frames of the new
    table whose render can differ (`affected`)."""

    old_frames: int
    frames: int
    mode: str
    columns: tuple[ColumnChange, ...]
    settings: tuple[SettingChange, ...]
    affected: np.ndarray = field(repr=False)  # bool per row of the new table

    @property
    def first_frame(self) -> int | None:
        """The first frame whose render can differ; None when none can."""
        hits = np.flatnonzero(self.affected)
        return int(hits[0]) if len(hits) else None

    @property
    def independent(self) -> bool:
        """Frames depend on their own rows only (a change renders those frames, not everything after)."""
        return not is_camera_mode(self.mode)

    @property
    def affected_frames(self) -> np.ndarray:
        return np.flatnonzero(self.affected)

    @property
    def every_frame(self) -> SettingChange | None:
        """The first changed setting that touches every frame, if any."""
        return next((s for s in self.settings if s.effect == "frames"), None)

    @property
    def video_settings(self) -> tuple[SettingChange, ...]:
        return tuple(s for s in self.settings if s.effect == "video")

    def first_change(self) -> str:
        """What makes the first affected frame differ, in words: "the prompt at frame 60"."""
        first = self.first_frame
        if first is None:
            return "nothing the frames read changed"
        setting = self.every_frame
        if setting is not None:
            return f"the {setting.name} ({_show(setting.old)} → {_show(setting.new)}), which every frame depends on"
        if first >= self.old_frames:
            return f"the new frames from {self.old_frames} (the scene grew from {self.old_frames} to {self.frames})"
        names = [c for c in self.columns if len(c.read) and int(c.read[0]) == first]
        words: list[str] = []
        for c in names:
            word = column_words(c.column)
            if word in words:
                continue
            words.append(word)
        text = " and ".join(words)
        start = min(int(c.rows[0]) for c in names)
        if start < first:
            return f"{text} from frame {start}, first read at frame {first}"
        return f"{text} at frame {first}"

    def summary(self) -> str:
        """What a render of the new table into the old one's folder keeps and renders, and why:
        "frames 0–59 kept: the first change is the prompt at frame 60"."""
        n, first = self.frames, self.first_frame
        if first is None:
            return f"all {n} frames kept: {self.first_change()}"
        if first == 0 and self.affected.all():
            return f"all {n} frames rendered: the first change is {self.first_change()}"
        if not self.independent:
            return f"frames {span(0, first - 1)} kept: the first change is {self.first_change()}"
        rendered = self.affected_frames
        return (f"frames {ranges_text(rendered)} rendered, the other {n - len(rendered)} kept: the first change is "
                f"{self.first_change()}")


_WORDS = {
    "prompt": "the prompt", "prompt_pieces": "the prompt", "prompt_from": "the prompt",
    "prompt_from_pieces": "the prompt", "prompt_blend": "the prompt crossfade",
    "negative_prompt": "the negative prompt", "negative_prompt_pieces": "the negative prompt",
    "negative_prompt_from": "the negative prompt", "negative_prompt_from_pieces": "the negative prompt",
    "negative_blend": "the negative prompt crossfade", "seed": "the seed", "subseed": "the subseed",
    "effective_steps": "the steps run (strength, steps)", "diffused": "the cadence", "tween": "the cadence",
    "tween_from": "the cadence", "tween_to": "the cadence", "lora_weights": "the LoRA weights",
}


def column_words(column: str) -> str:
    return _WORDS.get(column, column)


def _show(value: object) -> str:
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return "none" if value is None else str(value)


def _differ(a: np.ndarray | None, b: np.ndarray | None, n: int) -> np.ndarray:
    """One bool per row below n: the two columns' values differ there (floats compared by their bits)."""
    if a is None or b is None or a.dtype != b.dtype:
        return np.ones(n, dtype=bool)
    a, b = a[:n], b[:n]
    if a.dtype == np.float64:
        return np.ascontiguousarray(a).view(np.uint64) != np.ascontiguousarray(b).view(np.uint64)
    if a.dtype == object:
        return np.fromiter((x != y for x, y in zip(a, b, strict=True)), dtype=bool, count=n)
    return a != b


def compare(old: FrameTable, new: FrameTable) -> Changes:
    """The dependency rule: the frames of `new` whose render can differ from a render of `old` (see the
    module docstring), with every changed column and setting."""
    n_old, n_new = len(old), len(new)
    common = min(n_old, n_new)
    settings = [
        SettingChange(name, old.settings.get(name), new.settings.get(name), setting_effect(old, new, name))
        for name in sorted(set(old.settings) | set(new.settings))
        if old.settings.get(name) != new.settings.get(name)
    ]
    if old.format_version != new.format_version:
        settings.insert(0, SettingChange("format_version", old.format_version, new.format_version, "frames"))
    if lora_fused(old) != lora_fused(new):  # fused weights give other bits than the same weights apart
        settings.append(SettingChange("LoRA fusing", lora_fused(old), lora_fused(new), "frames"))
    reads_old, reads_new = RowReads(old), RowReads(new)
    names = [*new.names, *(c for c in old.names if c not in new.columns)]
    columns = []
    for name in names:
        diff = _differ(old.columns.get(name), new.columns.get(name), common)
        if not diff.any():
            continue
        read = diff & (reads_old.mask(name)[:common] | reads_new.mask(name)[:common])
        columns.append(ColumnChange(name, np.flatnonzero(diff), np.flatnonzero(read)))
    affected = np.zeros(n_new, dtype=bool)
    mode = str(new.settings.get("mode"))
    if any(s.effect == "frames" for s in settings):
        affected[:] = True
    else:
        for c in columns:
            affected[c.read] = True
        affected[common:] = True  # new frames
        if is_camera_mode(mode) and affected.any():
            affected[int(np.argmax(affected)):] = True
    return Changes(n_old, n_new, mode, tuple(columns), tuple(settings), affected)


# ---- frame lists in words ------------------------------------------------------------------------------------


def ranges(rows: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted rows as inclusive runs: [0, 1, 2, 5] -> [(0, 2), (5, 5)]."""
    out: list[list[int]] = []
    for r in sorted(int(x) for x in rows):
        if out and r == out[-1][1] + 1:
            out[-1][1] = r
        elif not out or r > out[-1][1]:
            out.append([r, r])
    return [(a, b) for a, b in out]


def span(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}–{b}"


def ranges_text(rows: Sequence[int] | np.ndarray) -> str:
    return ", ".join(span(a, b) for a, b in ranges(rows))


__all__ = ["Changes", "ColumnChange", "RowReads", "SettingChange", "column_words", "compare", "is_camera_mode",
           "lora_fused", "ranges", "ranges_text", "setting_effect", "span"]
