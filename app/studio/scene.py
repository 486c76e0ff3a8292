"""The scene as the studio page draws it: the compiled FrameTable turned into JSON (chart groups, columns
downsampled to a bounded number of points, prompt bands, diffused frames, beats, the audio waveform), or,
for a scene with errors, its diagnostics exactly as `dfm check` prints them. Compiling is torch-free
(`dfm.api.compile_result`), and nothing here writes a file."""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A column longer than this is sent as min/max per bucket (peaks survive); exact values come from
# /api/frame/K. 20,000 points is a few hundred KB of JSON per column group, drawn by uPlot at once.
MAX_POINTS = 20_000
MAX_BANDS = 2_000  # prompt runs sent with their text; a prompt that changes on every frame is a texture
MAX_MARKS = 20_000  # diffused frames and beats sent as ticks

# Columns that say nothing a chart's x axis or markers do not (app/plot.py leaves the same out), and
# the prompt columns' companions, shown as bands and text instead.
NOT_CHARTED = frozenset({"frame", "time", "tween_from", "tween_to", "diffused"})

# Charts: columns that share a unit share a chart; a column in no group gets a chart of its own.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rotation (°)", ("angle", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")),
    ("translation", ("translation_x", "translation_y", "translation_z")),
    ("zoom", ("zoom",)),
    ("strength · noise · contrast", ("strength", "noise", "contrast", "prompt_blend", "negative_blend", "tween")),
    ("steps · cfg", ("steps", "effective_steps", "unet_evals", "cfg_scale")),
    ("seed", ("seed", "seed_schedule", "subseed", "subseed_strength")),
    ("audio", ("audio_onset", "audio_rms", "audio_beat", "audio_beat_phase", "audio_low", "audio_mid",
               "audio_high")),
    ("camera (accumulated)", ("cam_angle", "cam_x", "cam_y", "cam_z", "cam_rx", "cam_ry", "cam_rz")),
    ("camera zoom (accumulated)", ("cam_zoom",)),
)


@dataclass
class SceneView:
    """One compile of the scene: the page's JSON, and the table for exact per-frame values (None with errors)."""

    payload: dict
    table: object | None = field(default=None, repr=False)


def load_scene(path: Path) -> SceneView:
    """Read and compile the scene at `path`; never raises for a bad scene (its problems are the payload)."""
    from ...api import compile_result
    from ..console import UsageError, read_source

    try:
        text = read_source(str(path))
    except (UsageError, OSError) as exc:
        return SceneView({"ok": False, "path": str(path), "diagnostics": f"{exc}\n", "summary": "cannot read"})
    try:
        result = compile_result(text, str(path))
    except Exception as exc:  # noqa: BLE001 - a bug in dfm: the page says so, as the command line would
        return SceneView({"ok": False, "path": str(path), "summary": "internal error",
                          "diagnostics": f"internal error: {type(exc).__name__}: {exc}\nThis is a bug in dfm; "
                                         "please report it with the scene.\n"})
    diagnostics = diagnostics_text(result.diagnostics, {str(path): text})
    from ..console import summary

    if result.errors or result.table is None:
        return SceneView({"ok": False, "path": str(path), "diagnostics": diagnostics,
                          "summary": summary(result.diagnostics, 1)})
    payload = table_payload(result.table)
    payload.update(path=str(path), diagnostics=diagnostics, summary=summary(result.diagnostics, 1))
    return SceneView(payload, result.table)


def diagnostics_text(diags, sources: dict[str, str]) -> str:
    """The diagnostics as `dfm check` prints them on standard output (full form; a StringIO is no terminal,
    so there is no colour)."""
    from ..console import print_diagnostics

    out = io.StringIO()
    print_diagnostics(diags, sources, "full", out)
    return out.getvalue()


def table_payload(table) -> dict:
    """Everything the page draws for a compiled table."""
    n = len(table)
    s = table.settings
    x, buckets = sample_positions(n)
    charted = charted_columns(table)
    series = {name: sampled(np.asarray(table.columns[name], dtype=np.float64), buckets) for name in charted}
    wave = waveform(table)
    if wave is not None:
        series["waveform"] = sampled(wave, buckets)
    return {
        "ok": True,
        "frames": n,
        "fps": float(s.fps),
        "width": int(s.width),
        "height": int(s.height),
        "mode": str(s.mode),
        "x": x,
        "series": series,
        "groups": chart_groups(list(series)),
        "columns": list(table.columns),
        "prompts": prompt_bands(table, "prompt"),
        "negative_prompts": prompt_bands(table, "negative_prompt"),
        "diffused": marks(table, "diffused"),
        "beats": marks(table, "audio_beat"),
        "audio": str(s.audio) if s.audio else None,
        "audio_offset": float(getattr(s, "audio_offset", 0.0) or 0.0),
    }


def charted_columns(table) -> list[str]:
    """Numeric columns that change over the scene (a constant is read in the values panel, not a chart)."""
    names = []
    for name, values in table.columns.items():
        a = np.asarray(values)
        if name in NOT_CHARTED or a.dtype.kind not in "iuf" or a.size == 0:
            continue
        f = a.astype(np.float64)
        if not np.all((f == f[0]) | (np.isnan(f) & np.isnan(f[0]))):
            names.append(name)
    return names


def chart_groups(names: list[str]) -> list[dict]:
    """The charts, in GROUPS order then table order: [{"title", "columns"}]."""
    left = list(names)
    groups = []
    for title, members in GROUPS + (("audio waveform", ("waveform",)),):
        mine = [m for m in members if m in left]
        if title == "audio" and "waveform" in left:
            mine = ["waveform", *mine]  # the features over the waveform
            left.remove("waveform")
        if mine:
            groups.append({"title": title, "columns": mine})
            left = [n for n in left if n not in mine]
    groups += [{"title": name, "columns": [name]} for name in left]
    return groups


def sample_positions(n: int) -> tuple[list[int], list[tuple[int, int]] | None]:
    """The frames the charts get a point at: every frame up to MAX_POINTS, else two per bucket (its first
    and last frame, carrying the bucket's min and max); and the buckets (None: no downsampling)."""
    if n <= MAX_POINTS:
        return list(range(n)), None
    size = math.ceil(n / (MAX_POINTS // 2))
    buckets = [(lo, min(lo + size, n)) for lo in range(0, n, size)]
    x = []
    for lo, hi in buckets:
        x += [lo, hi - 1] if hi - lo > 1 else [lo]
    return x, buckets


def sampled(values: np.ndarray, buckets: list[tuple[int, int]] | None) -> list[float | None]:
    """`values` at the chart's points: all of them, or each bucket's min then max (NaN ignored), so a spike
    one frame wide still shows however long the scene."""
    if buckets is None:
        return json_floats(values)
    starts = np.array([lo for lo, _ in buckets])
    wide = np.array([hi - lo > 1 for lo, hi in buckets])
    with np.errstate(invalid="ignore"):
        lows, highs = np.fmin.reduceat(values, starts), np.fmax.reduceat(values, starts)
    pairs = np.stack([lows, highs], axis=1)
    out = np.concatenate([pairs[i] if w else pairs[i, :1] for i, w in enumerate(wide)]) if not wide.all() \
        else pairs.reshape(-1)
    return json_floats(out)


def json_floats(values: np.ndarray) -> list[float | None]:
    """Floats JSON can carry: NaN and infinities become null (a gap in the chart)."""
    a = np.asarray(values, dtype=np.float64)
    return [float(v) if math.isfinite(v) else None for v in a.tolist()]


def prompt_bands(table, column: str) -> list[dict]:
    """Runs of one prompt: [{"start", "end" (inclusive), "text"}], at most MAX_BANDS (text dropped past it)."""
    if column not in table.columns or len(table) == 0:
        return []
    a = np.asarray(table.columns[column], dtype=object)
    cuts = np.flatnonzero(a[1:] != a[:-1]) + 1
    starts = [0, *cuts.tolist()]
    ends = [*(c - 1 for c in cuts.tolist()), len(a) - 1]
    runs = zip(starts[:MAX_BANDS], ends[:MAX_BANDS], strict=True)
    return [{"start": s, "end": e, "text": str(a[s])} for s, e in runs]


def marks(table, column: str) -> list[int]:
    """The frames where a boolean-like column is set (diffused frames, beats), at most MAX_MARKS."""
    if column not in table.columns:
        return []
    return np.flatnonzero(np.asarray(table.columns[column]).astype(bool))[:MAX_MARKS].tolist()


def waveform(table) -> np.ndarray | None:
    """The soundtrack's peak amplitude per frame (0..1), for drawing the audio features over the waveform;
    None without audio or when ffmpeg cannot decode it (the features are charted all the same)."""
    s = table.settings
    if not s.audio or len(table) == 0:
        return None
    try:
        stat = Path(s.audio).stat()
        samples = decoded(str(s.audio), stat.st_mtime_ns, stat.st_size)
    except Exception:  # noqa: BLE001 - a waveform is decoration; the compile already reported the track
        return None
    from ...compiler.audio import SR

    per_frame = SR / float(s.fps)
    offset = float(getattr(s, "audio_offset", 0.0) or 0.0) * SR
    starts = (offset + np.arange(len(table) + 1) * per_frame).astype(np.int64).clip(0, samples.size)
    peaks = np.zeros(len(table))
    filled = starts[1:] > starts[:-1]  # frames past the track's end (or before it starts) stay silent
    if filled.any():
        # cut at the scene's end: reduceat runs the last segment to the end of the array it is given, and
        # the track may go on past the scene
        peaks[filled] = np.maximum.reduceat(np.abs(samples[: starts[-1]]), starts[:-1][filled])
    top = peaks.max()
    return peaks / top if top > 0 else peaks


@functools.lru_cache(maxsize=2)
def decoded(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """The track's samples, decoded once per version of the file (each save recompiles; the track rarely
    changes)."""
    from ...compiler import audio

    return audio.decode(path)


def frame_values(table, k: int) -> dict:
    """Every column's exact value at frame `k` (numbers as numbers, text as text)."""
    out = {}
    for name, values in table.columns.items():
        v = values[k]
        if isinstance(v, np.bool_ | bool):
            out[name] = bool(v)
        elif isinstance(v, np.integer):
            out[name] = int(v)
        elif isinstance(v, np.floating | float):
            out[name] = float(v) if math.isfinite(v) else None
        else:
            out[name] = str(v)
    return out


__all__ = ["MAX_POINTS", "SceneView", "chart_groups", "diagnostics_text", "frame_values", "load_scene",
           "prompt_bands", "sample_positions", "sampled", "table_payload", "waveform"]
