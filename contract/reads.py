"""When the renderer reads a column, and what a change of a setting can change: the vocabulary of the contract.

The parameter catalogue (compiler/catalogue.py) says it for every parameter in its row (`read`, `read_if`,
`effect`); the compiler hands it over in the table (`FrameTable.column_reads`, `FrameTable.setting_effects`),
and the columns the compiler derives say it here (`table.DERIVED`). The dependency rule of an edit
(`changes.py`) and the rows the frame loop hands the renderer read it from the table, so a new parameter's row
alone tells both, and neither imports the compiler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .modes import MODES


class Read(str, Enum):
    """Which rows read a column."""

    EVERY = "every"  # every row (the cadence plan: what the written frame blends)
    DIFFUSED = "diffused"  # diffused rows: what a diffusion uses (prompts, seeds, steps, guidance)
    # rows after the first, in a mode with a camera: the motion that warps the diffusions still blended
    MOTION = "motion"
    # diffused rows after the first, in a mode with a camera: the image effects on the warped previous frame
    INIT = "init"
    NEVER = "never"  # no row: for previews and exports, or turned by the compiler into other columns


class Effect(str, Enum):
    """What a change of a static setting can change."""

    FRAMES = "frames"  # every frame (the model, the size, the sampler, ...)
    VIDEO = "video"  # the video file and no frame (fps, the soundtrack, ...)
    NONE = "none"  # nothing by itself: the compiler turned it into columns, which are compared themselves


@dataclass(frozen=True)
class ColumnRead:
    """When a column is read: `when`, in the modes `modes` (None: every mode), while the bool setting
    `only_if` is on (None: always)."""

    when: Read
    modes: frozenset[str] | None = None
    only_if: str | None = None

    def in_scene(self, settings: Mapping[str, object]) -> Read:
        """When it is read in a scene of these settings (NEVER where its mode or switch is off)."""
        mode = str(settings.get("mode"))
        if self.modes is not None and mode not in self.modes:
            return Read.NEVER
        if self.only_if is not None and not bool(settings.get(self.only_if, True)):
            return Read.NEVER
        if self.when in (Read.MOTION, Read.INIT) and not (mode in MODES and MODES[mode].camera):
            return Read.NEVER
        return self.when

    def to_json(self) -> dict:
        out: dict[str, object] = {"when": self.when.value}
        if self.modes is not None:
            out["modes"] = sorted(self.modes)
        if self.only_if is not None:
            out["if"] = self.only_if
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> ColumnRead:
        modes = data.get("modes")
        return cls(Read(data["when"]), frozenset(modes) if modes is not None else None, data.get("if"))


# a column no rule names is read on every row: the rule of what an edit changes then cannot miss it
UNKNOWN = ColumnRead(Read.EVERY)


__all__ = ["UNKNOWN", "ColumnRead", "Effect", "Read"]
