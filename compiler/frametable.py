"""The FrameTable: the one contract between the compiler and the runtime.

Row *i* holds everything the runtime does on frame *i*. Columnar (one numpy array per column, all the
same length), with the scene's static settings beside it, serialisable to CSV and JSON with a
`format_version`. Column names are Deforum's setting names without `_schedule`.

Columns (see docs/frametable.md for the full list):

- ``frame``, ``time`` (seconds)
- every schedule of the catalogue (``angle``, ``zoom``, ``translation_x`` … ``strength``, ``noise``,
  ``contrast``, ``cfg_scale``, ``steps``, ``kernel``, ``sigma``, ``amount``, ``threshold`` …):
  motion columns are per-frame increments applied to the previous frame, as in Deforum
- ``prompt``, ``negative_prompt``: the text in force (hard cuts at keys)
- ``prompt_from``, ``prompt_blend``; ``negative_prompt_from``, ``negative_blend``: during a crossfade
  (or in interpolation mode) the embedding is ``lerp(E(prompt_from), E(prompt), prompt_blend)``;
  ``prompt_blend`` is 1.0 where there is no blend
- ``seed``: the seed of the diffusion this frame shows (advances once per diffused frame)
- ``diffused``: whether this frame is denoised (otherwise a cadence tween)
- ``effective_steps``: denoising steps actually run, ``int((1 - strength) * steps)`` in float64
  (frame 0 without an init image: ``steps``); 0 on tweens
- ``tween``: weight of the newer diffusion in the written frame; ``tween_from`` / ``tween_to``: the
  frame indices of the older and newer diffusions blended (-1: none)
- ``cam_*``: the accumulated camera (for previews and Parseq export)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

FORMAT_VERSION = 1

TEXT_COLUMNS = ("prompt", "negative_prompt", "prompt_from", "negative_prompt_from")
INT_COLUMNS = ("frame", "seed", "steps", "kernel", "effective_steps", "tween_from", "tween_to")
BOOL_COLUMNS = ("diffused",)


class Settings(Mapping):
    """The scene's static settings by catalogue name, read as attributes: ``settings.fps``."""

    def __init__(self, values: Mapping[str, object]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> object:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"

    @property
    def width(self) -> int:
        return int(self._values["size"][0])

    @property
    def height(self) -> int:
        return int(self._values["size"][1])

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}


@dataclass
class FrameTable:
    columns: dict[str, np.ndarray]
    settings: Settings
    source_hash: str = ""
    source_path: str = ""
    format_version: int = FORMAT_VERSION
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"FrameTable columns differ in length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.columns["frame"]) if "frame" in self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def row(self, i: int) -> dict[str, object]:
        """One frame's values as plain Python scalars."""
        return {k: _scalar(v[i]) for k, v in self.columns.items()}

    def rows(self) -> Iterator[dict[str, object]]:
        for i in range(len(self)):
            yield self.row(i)

    def distinct_prompts(self) -> list[tuple[str, str]]:
        """Every (positive, negative) text pair the render must encode, in first-use order."""
        seen: dict[tuple[str, str], None] = {}
        for col, neg in (("prompt", "negative_prompt"), ("prompt_from", "negative_prompt_from")):
            if col in self.columns:
                for p, n in zip(self.columns[col], self.columns[neg], strict=True):
                    seen.setdefault((str(p), str(n)), None)
        return list(seen)

    # ---- serialisation -------------------------------------------------------------------------

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.names)
        for i in range(len(self)):
            w.writerow([_csv_cell(self.columns[k][i]) for k in self.names])
        return buf.getvalue()

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "source_hash": self.source_hash,
            "source_path": self.source_path,
            "frames": len(self),
            "settings": self.settings.to_json(),
            "meta": self.meta,
            "columns": {k: [_scalar(x) for x in v] for k, v in self.columns.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping) -> FrameTable:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"table format_version {data.get('format_version')!r} is not {FORMAT_VERSION}; recompile the scene"
            )
        settings = dict(data["settings"])
        if isinstance(settings.get("size"), list):
            settings["size"] = tuple(settings["size"])
        columns = {k: _array(k, v) for k, v in data["columns"].items()}
        return cls(columns, Settings(settings), data.get("source_hash", ""), data.get("source_path", ""),
                   data["format_version"], dict(data.get("meta", {})))

    def content_hash(self) -> str:
        """sha256 of what a render depends on: the columns and settings (not the source text or path,
        which a comment or a move changes without changing a frame)."""
        data = self.to_json()
        key = {k: data[k] for k in ("format_version", "settings", "columns")}
        text = json.dumps(key, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)


def _array(name: str, values: list) -> np.ndarray:
    if name in TEXT_COLUMNS:
        return np.array(values, dtype=object)
    if name in BOOL_COLUMNS:
        return np.array(values, dtype=bool)
    if name in INT_COLUMNS:
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=np.float64)


def _scalar(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    return x


def _csv_cell(x: object) -> str:
    x = _scalar(x)
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, float):
        return repr(x)
    return str(x)
