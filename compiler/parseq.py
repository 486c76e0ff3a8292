"""FrameTable ⇄ Parseq manifest (the `rendered_frames` JSON that Deforum's Parseq adapter reads).

Deforum reads a manifest field as managed iff it is present in ``rendered_frames[0]``. With
``parseq_use_deltas`` (its default) it takes the motion fields from ``X_delta``, the per-frame
increment, and every other field from ``X``, the absolute value. dfm's motion columns already are
per-frame increments, so the manifest writes them as ``X_delta`` unchanged and makes ``X`` the
accumulated camera that Parseq's definition of a delta implies:

- additive fields: ``X_t = X_{t-1} + d_t`` (a cumulative sum), ``X_0 = d_0``;
- zoom: Parseq's ``zoom_delta = 1 + (Z_t - Z_{t-1})``, frame 0 the value itself, so
  ``Z_t = Z_{t-1} + (z_t - 1)`` with ``Z_0 = z_0``: an additive accumulation, not a product.

Parseq is a dialect like Deforum's settings (`interop.py`): its names are the catalogue's `parseq=`
column; a schedule without one, or anything else a manifest cannot carry, goes through
`Exporter.unsupported` and so into the warnings. The import builds IR statements (`scene_writer`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import metadata

import numpy as np

from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .interop import Exporter, ImportResult, SettingsError, load_settings, number_keys, number_text
from .lower import split_neg
from .scene_writer import SceneWriter, comment, number, statement, string, word
from .scene_writer import key as make_key
from .scene_writer import keys as key_list


def delta_fields() -> dict[str, str]:
    """Parseq field -> how Deforum's parseq_adapter reads its `X_delta` ("add"/"multiply"), from the catalogue."""
    return {p.parseq: p.parseq_delta for p in cat.SCHEDULES if p.parseq and p.parseq_delta}


DEFAULT_BPM = 120.0  # Parseq requires a bpm; Deforum ignores it


def _version() -> str:
    try:
        return metadata.version("dfm")
    except metadata.PackageNotFoundError:
        return "0"


def parseq_fields(table: FrameTable) -> list[Param]:
    """The catalogue schedules Parseq can carry that the table has, in catalogue order."""
    return [p for p in cat.SCHEDULES if p.parseq and p.name in table.columns]


def parseq_less(table: FrameTable) -> list[Param]:
    """The table's schedules that the scene's mode uses and Parseq has no field for."""
    return [p for p in cat.SCHEDULES if not p.parseq and p.name in table.columns and table.settings.mode in p.modes]


def absolute_and_delta(field: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, X_delta) for one field, from the table's column."""
    values = np.asarray(values, dtype=np.float64)
    kind = delta_fields().get(field)
    if kind is not None:
        if kind == "multiply":
            return 1.0 + np.cumsum(values - 1.0), values
        return np.cumsum(values), values
    delta = np.diff(values, prepend=0.0)
    return values, delta


def _pc(values: np.ndarray) -> np.ndarray:
    top = float(np.max(np.abs(values))) if len(values) else 0.0
    return values * (100.0 / top) if top else np.zeros_like(values)


def _scalars(values: np.ndarray, integer: bool) -> list:
    return [int(v) for v in values] if integer else [float(v) for v in values]


def deforum_prompt(positive: str, negative: str) -> str:
    return f"{positive} --neg {negative}" if negative else positive


def to_parseq_manifest(table: FrameTable, warnings: list[str] | None = None) -> dict:
    """The table as a Parseq manifest; what Parseq cannot say is appended to `warnings`."""
    exporter = _ParseqExporter(table)
    manifest = exporter.manifest()
    if warnings is not None:
        warnings += exporter.warnings
    return manifest


class _ParseqExporter(Exporter):
    def __init__(self, table: FrameTable):
        super().__init__()
        self.table = table

    def manifest(self) -> dict:
        table = self.table
        s = table.settings
        n = len(table)
        fields = parseq_fields(table)
        columns: dict[str, tuple[list, list, list]] = {}
        meta: dict[str, dict] = {}
        for p in fields:
            integer = p.type == "int"
            x, d = absolute_and_delta(p.parseq, table[p.name])
            columns[p.parseq] = (_scalars(x, integer), _scalars(d, integer), [float(v) for v in _pc(x)])
            meta[p.parseq] = {"min": float(np.min(x)), "max": float(np.max(x)), "isFlat": bool(np.all(x == x[0]))}
        seeds = np.asarray(table["seed"], dtype=np.int64)
        columns["seed"] = (_scalars(seeds, True), _scalars(np.diff(seeds, prepend=0), True),
                           [float(v) for v in _pc(seeds.astype(np.float64))])
        meta["seed"] = {"min": int(seeds.min()), "max": int(seeds.max()), "isFlat": bool(np.all(seeds == seeds[0]))}
        frames = [_frame_row(i, table, columns) for i in range(n)]
        self.losses()
        cadence = mode_of(s.mode).cadence(s.cadence)
        managed = [*columns]
        return {
            "meta": {"generated_by": "dfm", "version": _version(), "source": table.source_path,
                     "source_hash": table.source_hash},
            "options": {"output_fps": float(s.fps), "bpm": float(s.bpm or DEFAULT_BPM), "cadence": cadence},
            "managedFields": managed,
            "displayedFields": managed,
            "rendered_frames": frames,
            "rendered_frames_meta": meta,
        }

    def losses(self) -> None:
        """What the manifest cannot carry, each through `unsupported`."""
        table, mode = self.table, self.table.settings.mode
        if "prompt_blend" in table.columns and np.any(np.asarray(table["prompt_blend"]) < 1.0):
            self.unsupported("prompt_blend", "prompt blends (crossfade or interpolation) are written as the prompt "
                             "being blended towards: Deforum reads one prompt per frame from Parseq")
        for p in parseq_less(table):
            values = np.asarray(table[p.name])
            if p.name == "seed_schedule":
                continue  # its seeds travel as Parseq's `seed`, the table's seed column
            if p.export == "local" or (isinstance(p.default, (int, float)) and np.all(values == p.default)):
                continue
            if not p.deforum:
                self.unsupported(p, "Parseq has no such field, and Deforum no such setting: left out")
            elif np.all(values == values[0]):
                self.unsupported(p, f"Parseq has no such field: Deforum uses its own `{p.deforum}` (set it to "
                                 f"{number_text(values[0])})")
            else:
                self.unsupported(p, f"changes over the scene, and Parseq has no such field: set Deforum's "
                                 f"`{p.deforum}`")
        if "clip_skip" in table.columns and np.any(np.asarray(table["clip_skip"]) != 1):
            self.unsupported("clip_skip", "Deforum reads Parseq's `clipskip` only with enable_clipskip_scheduling on "
                             "in its own settings")
        if mode_of(mode).from_noise:
            self.unsupported("mode", f"Deforum uses Parseq manifests in 2D, 3D and video modes, not in {mode}")


def _frame_row(i: int, table: FrameTable, columns: Mapping[str, tuple[list, list, list]]) -> dict:
    row: dict = {"frame": i}
    for name, (x, d, pc) in columns.items():
        row[name] = x[i]
        row[f"{name}_delta"] = d[i]
        row[f"{name}_pc"] = pc[i]
    row["deforum_prompt"] = deforum_prompt(str(table["prompt"][i]), str(table["negative_prompt"][i]))
    return row


# ---- Parseq → .dfm --------------------------------------------------------------------------------------


def from_parseq_manifest(data: Mapping | str | bytes, source: str = "manifest",
                         use_deltas: bool = True) -> ImportResult:
    """A Parseq manifest as a .dfm scene: one key per frame where the values change (collinear runs
    collapse to their end keys), prompts from `deforum_prompt`, fps and cadence from `options`."""
    data = load_settings(data)
    frames = data.get("rendered_frames")
    if not isinstance(frames, list) or not frames or not all(isinstance(f, Mapping) for f in frames):
        raise SettingsError("not a Parseq manifest: it has no `rendered_frames` list",
                            help="export the manifest from Parseq with its rendered frames")
    if len(frames) > cat.MAX_FRAMES:
        raise SettingsError(f"the manifest has {len(frames):,} rendered frames (dfm renders at most "
                            f"{cat.MAX_FRAMES:,})", help="render a shorter stretch of it in Parseq")
    frames = [r for _, r in _frame_numbers(frames)]
    if not isinstance(data.get("options") or {}, Mapping):
        raise SettingsError("the manifest's `options` is not an object", help="export the manifest from Parseq again")
    importer = _ParseqImporter(data, frames, use_deltas)
    writer = importer.scene(source)
    errors = writer.errors()
    if errors:
        raise SettingsError(f"the manifest gives values dfm rejects: {errors[0].message}",
                            help="check the manifest's fields at the frame named")
    fields = {k for k in frames[0]}
    return ImportResult(writer.text(), importer.warnings, importer.mapped & fields, importer.warned & fields)


class _ParseqImporter:
    def __init__(self, data: Mapping, frames: list[Mapping], use_deltas: bool):
        self.data, self.frames, self.use_deltas = data, frames, use_deltas
        self.n = len(frames)
        self.warnings: list[str] = []
        self.mapped: set[str] = {"frame"}
        self.warned: set[str] = set()
        self.by_parseq = {p.parseq: p for p in cat.SCHEDULES if p.parseq}
        self.seed_keys: list | None = None  # a seed_schedule, when the seeds change

    def column(self, name: str) -> np.ndarray:
        return np.array([_manifest_number(r.get(name, math.nan), name, r) for r in self.frames], dtype=np.float64)

    def option(self, name: str) -> float | None:
        """A number from the manifest's `options`, or None when it is absent or zero."""
        value = (self.data.get("options") or {}).get(name)
        return _manifest_number(value, name, None) if value else None

    def scene(self, source: str) -> SceneWriter:
        mode = "3d" if any(f in self.frames[0] for f in ("translation_z", "rotation_3d_x", "rotation_3d_y",
                                                        "rotation_3d_z", "fov")) else "2d"
        self.warnings.append(f"mode {mode} guessed from the manifest's fields: Parseq does not record it")
        settings = [statement("mode", word(mode)), statement("frames", number(self.n))]
        if fps := self.option("output_fps"):
            settings.append(statement("fps", number(fps)))
        if bpm := self.option("bpm"):
            settings.append(statement("bpm", number(bpm)))
        if mode in cat.BY_NAME["cadence"].modes and (cadence := self.option("cadence")):
            settings.append(statement("cadence", number(int(cadence))))
        writer = SceneWriter()
        writer.paragraph([comment(f"imported from {source} (Parseq) by `dfm import`"),
                          statement(cat.VERSION_STATEMENT, number(cat.FORMAT_VERSION))])
        writer.paragraph(settings + self.seed())
        writer.paragraph(self.prompts())
        writer.paragraph(self.schedules())
        self.unknown()
        return writer

    def seed(self) -> list[ir.Statement]:
        """Deforum's seed is int() of Parseq's `seed`: one seed, or a seed_schedule (`self.seed_keys`). A
        fractional seed is Parseq's seed travel, which its `subseed`/`subseed_strength` fields carry."""
        if "seed" not in self.frames[0]:
            return []
        raw = self.column("seed")
        if np.any(np.isnan(raw)):
            raise SettingsError(f"the manifest's `seed` is missing from frame {int(np.argmax(np.isnan(raw)))} on",
                                help="Deforum reads a field as managed only when every frame has it")
        seeds = np.trunc(raw)
        self.mapped |= {"seed", "seed_delta", "seed_pc"}
        start = int(seeds[0])
        if np.any(raw % 1 != 0) and "subseed_strength" not in self.frames[0]:
            self.warnings.append("fractional Parseq seeds without their subseed fields are cut to whole seeds")
        if np.all(seeds == start):
            return [statement("seed", number(start), word("fixed"))]
        self.seed_keys = [make_key(f, number(float(v), v)) for f, v in number_keys(seeds, 0, self.n)]
        return [statement("seed", number(start), word("schedule"))]

    def prompts(self) -> list[ir.Statement]:
        if "deforum_prompt" not in self.frames[0]:
            self.warnings.append("the manifest has no prompts: an empty `prompt 0 \"\"` stands in")
            return [statement("prompt", number(0), string(""))]
        self.mapped.add("deforum_prompt")
        lines, previous = [], None
        for i, r in enumerate(self.frames):
            text = str(r.get("deforum_prompt", ""))
            if text == previous:
                continue
            previous = text
            pos, neg = split_neg(text)
            lines += [statement("prompt", number(i), string(pos)), statement("negative", number(i), string(neg))]
        return lines

    def schedules(self) -> list[ir.Statement]:
        lines = {"seed_schedule": statement("seed_schedule", key_list(self.seed_keys))} if self.seed_keys else {}
        no_variation = "subseed_strength" in self.frames[0] and not np.any(self.column("subseed_strength"))
        for name, p in self.by_parseq.items():
            if name not in self.frames[0]:
                continue
            if no_variation and name in ("subseed", "subseed_strength"):  # strength 0: the subseed changes nothing
                self.mapped |= {name, f"{name}_delta", f"{name}_pc"}
                continue
            delta = self.use_deltas and name in delta_fields() and f"{name}_delta" in self.frames[0]
            values = self.column(f"{name}_delta" if delta else name)
            self.mapped |= {name, f"{name}_delta", f"{name}_pc"}
            keys = [make_key(f, number(float(v), v)) for f, v in number_keys(values, 0, self.n)]
            lines[p.name] = statement(p.name, key_list(keys))
        return [lines[p.name] for p in cat.SCHEDULES if p.name in lines]

    def unknown(self) -> None:
        rest = sorted(k for k in self.frames[0] if k not in self.mapped and not k.endswith(("_delta", "_pc")))
        if rest:
            self.warned |= set(rest) | {f"{k}_delta" for k in rest} | {f"{k}_pc" for k in rest}
            self.warnings.append(f"ignored {len(rest)} Parseq fields dfm has no schedule for: {', '.join(rest)}")


def _frame_numbers(rows: list[Mapping]) -> list[tuple[int, Mapping]]:
    """Each row with its `frame` (its position when it has none), checked: a whole frame inside dfm's range,
    each once. Deforum fills its series by frame number, so a bad one would silently move or drop values."""
    out, seen = [], set()
    for i, r in enumerate(rows):
        raw = r.get("frame", i)
        x = _manifest_number(raw, "frame", r)
        why = ("not a whole frame" if not x.is_integer() else "negative" if x < 0
               else f"past dfm's last frame {cat.MAX_FRAMES - 1:,}" if x >= cat.MAX_FRAMES
               else "a frame given twice" if x in seen else "")
        if why:
            raise SettingsError(f"the manifest's `frame` {raw!r} (rendered_frames[{i}]) is {why}",
                                help="export the manifest from Parseq again")
        seen.add(x)
        out.append((int(x), r))
    out.sort(key=lambda fr: fr[0])
    gap = next((i for i, (f, _) in enumerate(out) if f != i), None)
    if gap is not None:  # dfm reads the rows as frames 0, 1, 2 …: a gap would shift every later value
        raise SettingsError(f"the manifest has no row for frame {gap} (its next `frame` is {out[gap][0]:,}): "
                            "dfm needs every frame from 0 on", help="export the manifest from Parseq again")
    return out


def _manifest_number(value: object, name: str, row: Mapping | None) -> float:
    """A manifest's number (NaN stays NaN: a field missing from a frame), or SettingsError naming where."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        x = None
    if x is None or isinstance(value, bool) or math.isinf(x):
        where = f"frame {row.get('frame', '?')!r}" if row is not None else "options"
        raise SettingsError(f"the manifest's `{name}` at {where} is {value!r}, not a number",
                            help="check the manifest's fields at the frame named")
    return x


def dumps(manifest: Mapping) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False)


__all__ = ["to_parseq_manifest", "from_parseq_manifest", "absolute_and_delta", "delta_fields", "dumps"]
