"""The FrameTable: the typed contract between the compiler, which writes it, and the runtime, which reads it.

Owned by neither stage (numpy only, no catalogue, no torch): `compiler/` builds a table, `runtime/`
executes one, `dfm/` prints, plots and ships it. Row *i* holds everything the runtime does on frame *i*.

- **Columns** are numpy arrays of one of four types (`ColumnType`): float64, int64, bool, or text
  (object arrays of str). A table says each column's type itself; the JSON form records it, so a table
  read back is the table that was written (an int schedule stays int, and so does `content_hash`).
  The compiler types each schedule column from its catalogue row; the columns the compiler derives
  (`frame`, `seed`, `diffused`, `tween` …) are declared here in `DERIVED_COLUMNS`, because they are the
  contract itself, not parameters.
- **Settings** are the scene's static settings, fully resolved (every catalogue setting present, defaults
  filled in) and frozen. The runtime reads `settings.color_coherence`; it never supplies a default of
  its own, so a table read from JSON renders exactly as the compiled one.

docs/frametable.md lists every column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TextIO

import numpy as np

from .errors import UserError
from .reads import UNKNOWN, ColumnRead, Effect, Read

FORMAT_VERSION = 2


ROWS_PER_CHUNK = 8192  # rows formatted at a time when a table is written out
JSON_VALUES_PER_CHUNK = 1024  # a text column's values can be long (a 32-part prompt's pieces)
MAX_MEMO = 65_536  # distinct numbers per column whose text is kept while writing


class TableError(UserError, ValueError):
    """A table that breaks the contract."""

    def __init__(self, message: str, help: str = "recompile the scene with this dfm (`dfm compile`)"):
        super().__init__(message, help)


class MissingSetting(TableError, AttributeError):
    """`settings.name` for a setting the table does not carry."""


class ColumnType(str, Enum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    TEXT = "text"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_DTYPES[self])

    def array(self, values) -> np.ndarray:
        """`values` as a column of this type (text: an object array of str)."""
        if self is ColumnType.TEXT:
            out = np.empty(len(values), dtype=object)
            out[:] = [str(v) for v in values]
            return out
        return np.asarray(values, dtype=_DTYPES[self])


_DTYPES = {ColumnType.FLOAT: np.float64, ColumnType.INT: np.int64, ColumnType.BOOL: np.bool_,
           ColumnType.TEXT: object}


def column_type(values: np.ndarray) -> ColumnType:
    """The contract type of a column array; anything else (float32, int32, a nested array) is refused."""
    dt = values.dtype
    for t, want in _DTYPES.items():
        if dt == np.dtype(want):
            return t
    raise TableError(f"a FrameTable column has dtype {dt}; columns are float64, int64, bool or text",
                     "build the column with ColumnType.array")


F, I, B, T = ColumnType.FLOAT, ColumnType.INT, ColumnType.BOOL, ColumnType.TEXT

# the accumulated camera after each frame's increment (previews and exports; the renderer never reads it)
CAMERA_COLUMNS = ("cam_angle", "cam_zoom", "cam_x", "cam_y", "cam_z", "cam_rx", "cam_ry", "cam_rz")

# The columns the compiler derives besides the parameter schedules: each one's type and when the renderer
# reads it (contract/reads.py; a parameter's column says it in its catalogue row instead).
E, D, N = ColumnRead(Read.EVERY), ColumnRead(Read.DIFFUSED), ColumnRead(Read.NEVER)
DERIVED: dict[str, tuple[ColumnType, ColumnRead]] = {
    "frame": (I, N),  # the frame index (stills: the image index)
    "time": (F, N),  # seconds: frame / fps
    "prompt": (T, D), "negative_prompt": (T, D),  # the text in force
    "prompt_from": (T, D), "prompt_blend": (F, D),  # embedding = lerp(E(prompt_from), E(prompt), prompt_blend)
    "negative_prompt_from": (T, D), "negative_blend": (F, D),
    # each prompt text as the compiler read it: JSON, [text, weight] pairs and "BREAK", or the composite
    # object {"parts": [{"weight", "schedule"}]} of AND, weights and prompt editing (docs/frametable.md)
    "prompt_pieces": (T, D), "negative_prompt_pieces": (T, D), "prompt_from_pieces": (T, D),
    "negative_prompt_from_pieces": (T, D),
    # per LoRA of settings.lora, [unet weight, text-encoder weight]: JSON ("[]" without a LoRA)
    "lora_weights": (T, D),
    "seed": (I, D),  # the seed of the diffusion the frame shows
    "diffused": (B, E),  # denoised (else a cadence tween)
    "effective_steps": (I, D),  # denoising steps actually run
    # UNet batch items of the row: effective_steps × (conditional parts + 1 when guided); 0 when not diffused;
    # a count of the work the other columns imply, for the user and the benchmark, never an input
    "unet_evals": (I, N),
    # written = (1 - tween) D[tween_from] + tween D[tween_to]
    "tween": (F, E), "tween_from": (I, E), "tween_to": (I, E),
    **dict.fromkeys(CAMERA_COLUMNS, (F, N)),
}
DERIVED_COLUMNS: dict[str, ColumnType] = {name: type_ for name, (type_, _) in DERIVED.items()}


class Settings(Mapping):
    """The scene's static settings by catalogue name, frozen, read as attributes: ``settings.fps``.

    Every setting is present (the compiler fills in the defaults); reading one the table lacks raises
    MissingSetting, never a silent default."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, object]):
        object.__setattr__(self, "_values", {k: _frozen(v) for k, v in values.items()})

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise MissingSetting(f"the table has no setting `{name}`") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Settings are frozen: build a new one with Settings({**old, name: value})")

    def __reduce__(self):
        return (Settings, (self._values,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._values == other._values

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"

    def replace(self, **changes: object) -> Settings:
        return Settings({**self._values, **changes})

    @property
    def width(self) -> int:
        return int(self.size[0])

    @property
    def height(self) -> int:
        return int(self.size[1])

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}


def _frozen(v: object) -> object:
    return tuple(_frozen(x) for x in v) if isinstance(v, list | tuple) else v


@dataclass
class FrameTable:
    columns: dict[str, np.ndarray]
    settings: Settings
    source_hash: str = ""
    source_path: str = ""
    format_version: int = FORMAT_VERSION
    meta: dict = field(default_factory=dict)
    # when the renderer reads each parameter column, and what a change of each setting can change: the
    # catalogue's rows, handed over by the compiler (contract/reads.py); the derived columns say it in DERIVED
    column_reads: dict[str, ColumnRead] = field(default_factory=dict)
    setting_effects: dict[str, Effect] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise TableError(f"FrameTable columns differ in length: {sorted(lengths)}")
        if not isinstance(self.settings, Settings):
            self.settings = Settings(self.settings)
        for name, values in self.columns.items():
            got = column_type(values)
            want = DERIVED_COLUMNS.get(name)
            if want is not None and got is not want:
                raise TableError(f"column `{name}` is {got.value}; the contract makes it {want.value}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def types(self) -> dict[str, ColumnType]:
        return {k: column_type(v) for k, v in self.columns.items()}

    def read_of(self, name: str) -> ColumnRead:
        """When the renderer reads column `name` (a column no rule names: on every row)."""
        derived = DERIVED.get(name)
        return derived[1] if derived is not None else self.column_reads.get(name, UNKNOWN)

    def effect_of(self, setting: str) -> Effect:
        """What a change of setting `setting` can change (a setting no rule names: every frame)."""
        return self.setting_effects.get(setting, Effect.FRAMES)

    def require(self, names) -> None:
        """Raise TableError unless every column in `names` is present."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise TableError(f"the table has no column {', '.join(f'`{n}`' for n in missing)}")

    def with_columns(self, **columns) -> FrameTable:
        """A copy with some columns replaced (each cast to the type of the column it replaces)."""
        cols = dict(self.columns)
        for k, v in columns.items():
            values = list(v) if isinstance(v, list | tuple | np.ndarray) else [v] * len(self)
            if k in cols:
                t = column_type(cols[k])
            elif all(isinstance(x, str) for x in values):
                t = T
            else:
                t = column_type(np.asarray(values))
            cols[k] = t.array(values)
        return FrameTable(cols, self.settings, self.source_hash, self.source_path, self.format_version,
                          dict(self.meta), self.column_reads, self.setting_effects)

    def with_settings(self, **changes: object) -> FrameTable:
        """A copy with some settings replaced (e.g. `audio=None` for a silent video)."""
        return FrameTable(dict(self.columns), self.settings.replace(**changes), self.source_hash, self.source_path,
                          self.format_version, dict(self.meta), self.column_reads, self.setting_effects)

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
        self.write_csv(buf)
        return buf.getvalue()

    def write_csv(self, out: TextIO) -> None:
        """The CSV to a stream, a chunk of rows at a time: a million-frame table never becomes one string, and
        a value repeated down a column is formatted once."""
        w = csv.writer(out, lineterminator="\n")
        w.writerow(self.names)
        memos: dict[str, dict] = {k: {} for k in self.names}
        for start in range(0, len(self), ROWS_PER_CHUNK):
            cells = [_csv_cells(self.columns[k][start:start + ROWS_PER_CHUNK], memos[k]) for k in self.names]
            w.writerows(zip(*cells, strict=True))

    def write_json(self, out: TextIO, indent: int = 1) -> None:
        """`to_json()` as JSON text to a stream, each column written a chunk of values at a time (the same
        document as `json.dump(table.to_json(), out)`, laid out more compactly)."""
        head = json.dumps({**self._json_head(), "columns": {}}, ensure_ascii=False, indent=indent)
        out.write(head[:head.rindex("{}")] + "{")
        pad = " " * (2 * indent)
        for j, (name, values) in enumerate(self.columns.items()):
            out.write(("," if j else "") + "\n" + pad + json.dumps(name, ensure_ascii=False) + ": [")
            step = JSON_VALUES_PER_CHUNK
            for start in range(0, len(values), step):
                chunk = [_scalar(x) for x in values[start:start + step].tolist()]
                out.write((", " if start else "") + json.dumps(chunk, ensure_ascii=False)[1:-1])
            out.write("]")
        out.write("\n" + " " * indent + "}\n}\n")

    def _json_head(self) -> dict:
        return {
            "format_version": self.format_version,
            "source_hash": self.source_hash,
            "source_path": self.source_path,
            "frames": len(self),
            "settings": self.settings.to_json(),
            "meta": self.meta,
            "reads": {"columns": {k: v.to_json() for k, v in self.column_reads.items()},
                      "settings": {k: v.value for k, v in self.setting_effects.items()}},
            "types": {k: t.value for k, t in self.types.items()},
        }

    def to_json(self) -> dict:
        return {**self._json_head(), "columns": {k: [_scalar(x) for x in v] for k, v in self.columns.items()}}

    @classmethod
    def from_json(cls, data: Mapping) -> FrameTable:
        if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
            found = data.get("format_version") if isinstance(data, Mapping) else None
            raise TableError(f"table format_version {found!r} is not {FORMAT_VERSION}")
        try:
            types = {k: ColumnType(v) for k, v in data["types"].items()}
            columns = {k: types[k].array(v) for k, v in data["columns"].items()}
            settings = Settings(data["settings"])
            reads = data.get("reads", {})
            column_reads = {k: ColumnRead.from_json(v) for k, v in reads.get("columns", {}).items()}
            setting_effects = {k: Effect(v) for k, v in reads.get("settings", {}).items()}
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise TableError(f"the table JSON is malformed: {e}") from None
        return cls(columns, settings, data.get("source_hash", ""), data.get("source_path", ""),
                   data["format_version"], dict(data.get("meta", {})), column_reads, setting_effects)

    def content_hash(self) -> str:
        """sha256 of what a render depends on: the columns, their types and the settings (not the source
        text or path, which a comment or a move changes without changing a frame)."""
        data = self.to_json()
        key = {k: data[k] for k in ("format_version", "settings", "types", "columns")}
        text = json.dumps(key, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)


def _scalar(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    return x


def _csv_cells(values: np.ndarray, memo: dict) -> list[str]:
    """`_csv_cell` of each value, each distinct number or text formatted once (`memo`, per column)."""
    if values.dtype == bool:
        return ["1" if x else "0" for x in values.tolist()]
    out = []
    for x in values.tolist():  # Python scalars: float, int, str (the text itself), …
        if type(x) is str:
            out.append(x)
            continue
        kept = type(x) is int or (type(x) is float and x != 0.0)  # 0.0 == -0.0, but they print apart
        text = memo.get(x) if kept else None
        if text is None:
            text = _csv_cell(x)
            if kept and len(memo) < MAX_MEMO:
                memo[x] = text
        out.append(text)
    return out


def _csv_cell(x: object) -> str:
    x = _scalar(x)
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, float):
        return repr(x)
    return str(x)


__all__ = ["CAMERA_COLUMNS", "DERIVED", "DERIVED_COLUMNS", "FORMAT_VERSION", "ColumnType", "FrameTable",
           "MissingSetting", "Settings", "TableError", "column_type"]
