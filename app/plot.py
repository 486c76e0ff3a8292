"""`dfm plot`: draw a compiled FrameTable, one panel per parameter that changes over the scene.

matplotlib is imported inside the functions that draw, never at module level, so that `dfm check` (and
anything else that merely imports the package) pays nothing for it. Drawing goes through an explicit
Agg canvas rather than pyplot: no global backend switch, no figure registry to leak between calls.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations; keeps matplotlib off the import path
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..contract.table import FrameTable

# Bookkeeping columns: they vary on every scene but say nothing the x axis or the markers do not.
_NOT_PLOTTED = frozenset({"frame", "time", "tween_from", "tween_to"})
# Above this many diffused frames, dots on every line turn into a solid smear; draw a rug instead.
_MAX_DOTS = 1500
_PROMPT_LABEL_CHARS = 28
_DEFAULT_FPS = 15.0


def plottable_columns(table: FrameTable) -> list[str]:
    """Numeric per-frame columns, in table order (text and boolean columns are drawn as markers)."""
    names = []
    for name, values in table.columns.items():
        if name in _NOT_PLOTTED:
            continue
        kind = np.asarray(values).dtype.kind
        if kind in "iuf":
            names.append(name)
    return names


def varying_columns(table: FrameTable) -> list[str]:
    """The plottable columns whose value is not the same on every frame."""
    out = []
    for name in plottable_columns(table):
        values = np.asarray(table.columns[name], dtype=np.float64)
        # NaN-aware: a column that is NaN everywhere, or constant, is not "varying".
        if values.size and not np.all((values == values[0]) | (np.isnan(values) & np.isnan(values[0]))):
            out.append(name)
    return out


def build_figure(table: FrameTable, params: list[str] | None = None) -> tuple[Figure, list[Axes]]:
    """The figure and its parameter panels (top to bottom), without writing anything."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    names = select_columns(table, params)
    frames = len(next(iter(table.columns.values()))) if table.columns else 0
    x = np.arange(frames)
    fps = _fps(table)

    rows = max(len(names), 1)
    fig = Figure(figsize=(11, 1.1 + 1.7 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to fig; savefig then needs no pyplot
    axes = list(np.atleast_1d(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]))

    source = Path(table.source_path).name if table.source_path else "<string>"
    fig.suptitle(f"{source} — {frames} frames at {fps:g} fps")

    diffused = _diffused(table, frames)
    cuts = _prompt_cuts(table)
    if not names:
        axes[0].text(0.5, 0.5, "no parameter varies across frames", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_yticks([])

    for ax, name in zip(axes[: len(names)], names, strict=True):
        y = np.asarray(table.columns[name], dtype=np.float64)
        # steps-post draws integer columns (steps, seed, kernel) as the staircase they are
        is_int = np.asarray(table.columns[name]).dtype.kind in "iu"
        ax.plot(x, y, lw=1.2, color="C0", drawstyle="steps-post" if is_int else "default")
        if diffused is not None and 0 < diffused.sum() <= _MAX_DOTS and frames > 1:
            ax.plot(x[diffused], y[diffused], ".", ms=3.5, color="C1", label="diffused frame")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(True, alpha=0.3)
        for frame in cuts:
            ax.axvline(frame, color="C3", lw=0.8, ls="--", alpha=0.7)

    bottom = axes[-1]
    if diffused is not None and diffused.sum() > _MAX_DOTS:
        # a rug along the bottom panel: one short tick per diffused frame, as a single collection
        rug = blended_transform_factory(bottom.transData, bottom.transAxes)
        bottom.vlines(x[diffused], 0, 0.05, transform=rug, color="C1", lw=0.5, label="diffused frame")
    bottom.set_xlabel("frame")
    if frames:
        bottom.set_xlim(0, max(frames - 1, 1))

    top = axes[0]
    seconds = top.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
    seconds.set_xlabel("seconds")
    # label each prompt cut once, on the top panel, where the seconds axis leaves room above the lines
    prompts = table.columns.get("prompt")
    for frame in cuts:
        text = _shorten(str(prompts[frame])) if prompts is not None else ""
        top.annotate(text, xy=(frame, 1), xycoords=top.get_xaxis_transform(), xytext=(3, -3),
                     textcoords="offset points", va="top", fontsize=7, color="C3",
                     bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    if diffused is not None and diffused.any() and names:
        handles, labels = top.get_legend_handles_labels()
        if not handles:
            handles, labels = bottom.get_legend_handles_labels()
        if handles:
            top.legend(handles[:1], labels[:1], loc="lower right", fontsize=7)
    return fig, axes


def plot_table(table: FrameTable, out_path: Path, params: list[str] | None = None) -> Path:
    """Draw `table` to `out_path` (format from its suffix; PNG by default) and return the path.

    One panel per parameter that varies across frames, or per name in `params` (unknown names raise
    `ValueError` listing the valid ones). The file appears whole or not at all: it is written to a
    temporary file in the same folder and moved into place. A new file gets the mode the umask gives (as
    every output of dfm), a rewritten one keeps its own.
    """
    from ..contract.files import write_atomic

    out_path = Path(out_path)
    fig, _ = build_figure(table, params)
    fmt = out_path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    write_atomic(out_path, buf.getvalue())  # a temp file then a rename; the mode follows the umask
    return out_path


# ---- helpers ---------------------------------------------------------------------------------------


def select_columns(table: FrameTable, params: list[str] | None) -> list[str]:
    """The columns to draw: `params` in the user's order, or the varying ones; an unknown name raises
    ValueError listing the valid ones."""
    if params is None:
        return varying_columns(table)
    valid = plottable_columns(table)
    unknown = [p for p in params if p not in valid]
    if unknown:
        raise ValueError(
            f"cannot plot {', '.join(map(repr, unknown))}: not a numeric column of this table; "
            f"valid names: {', '.join(valid)}"
        )
    return list(dict.fromkeys(params))  # keep the user's order, drop repeats


def _fps(table: FrameTable) -> float:
    fps = table.settings.get("fps") if table.settings is not None else None
    try:
        fps = float(fps) if fps is not None else _DEFAULT_FPS
    except (TypeError, ValueError):
        fps = _DEFAULT_FPS
    return fps if fps > 0 else _DEFAULT_FPS


def _diffused(table: FrameTable, frames: int) -> np.ndarray | None:
    col = table.columns.get("diffused")
    if col is None:
        return None
    mask = np.asarray(col, dtype=bool)
    return mask if mask.shape == (frames,) else None


def _prompt_cuts(table: FrameTable) -> list[int]:
    """Frames where the positive prompt differs from the frame before (frame 0 included)."""
    prompts = table.columns.get("prompt")
    if prompts is None or len(prompts) == 0:
        return []
    p = np.asarray(prompts, dtype=object)
    changed = np.nonzero(p[1:] != p[:-1])[0] + 1
    return [0, *changed.tolist()]


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PROMPT_LABEL_CHARS else text[: _PROMPT_LABEL_CHARS - 1] + "…"
