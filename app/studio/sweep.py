"""A `dfm batch --vary` folder as an X/Y/Z grid, as A1111's X/Y/Z plot lays one out: one axis per varied
setting (the first two as X and Y, the others as one grid each), one cell per variant.

`dfm batch --out OUT scene.dfm --vary seed=1,2 --vary strength=0.5,0.6` renders each variant into
`OUT/scene/seed=1,strength=0.5/` (scaleout/batch.py `variation_label`) and writes `OUT/batch.json` (each
scene's `variation`, `out`, `status`, `video`). The summary is read when there is one; a batch still
running (no summary yet) is read from its folder names. Read-only.
"""

from __future__ import annotations

from pathlib import Path

from ...runtime.outdir import Output
from ...scaleout.batch import SUMMARY_FILE, read_summary
from .render_watch import frames_folder, scan_frames

SUMMARY_LIMIT = 64 << 20  # a summary lists up to 10,000 variants with their warnings: megabytes, never this


def summary_records(path: Path) -> list[dict] | None:
    """The scene records of a batch summary that name their folder, or None without a summary."""
    try:
        if path.stat().st_size > SUMMARY_LIMIT:
            return None
    except OSError:
        return None
    data = read_summary(path)
    if data is None or not isinstance(data.get("scenes"), list):
        return None
    return [r for r in data["scenes"] if isinstance(r, dict) and isinstance(r.get("out"), str)]


def parse_label(name: str) -> dict[str, str] | None:
    """`seed=3,strength=0.5` -> {"seed": "3", "strength": "0.5"}; None for a folder that is no variant
    (a long label ending in a hash cannot be read back: only the summary names its values)."""
    values = {}
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or not value or key in values:
            return None
        values[key] = value
    return values or None


def records_from_folders(root: Path, stem: str | None) -> list[dict]:
    """Variant folders under `root` (`root/<label>/`) or `root/<stem>/<label>/`, as summary-like records."""
    records = []
    for base, prefix in ((root, ""), (root / stem, f"{stem}/") if stem else (None, "")):
        if base is None or not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            values = parse_label(d.name) if d.is_dir() else None
            if values:
                records.append({"out": f"{prefix}{d.name}", "variation": values, "status": "rendering"})
        if records:
            break
    return records


def sweep_records(root: Path, stem: str | None) -> list[dict]:
    """The variants of the sweep at `root`, the ones of scene `stem` when the batch had several scenes."""
    records = summary_records(root / SUMMARY_FILE)
    if records is None:
        return records_from_folders(root, stem)
    records = [r for r in records if isinstance(r.get("variation"), dict) and r["variation"]]
    mine = [r for r in records if stem and r["out"].split("/", 1)[0] == stem]
    if mine:
        return mine
    scenes = sorted({r["out"].split("/", 1)[0] for r in records})
    return [r for r in records if r["out"].split("/", 1)[0] == scenes[0]] if scenes else []


def axes_of(records: list[dict]) -> list[dict]:
    """[{"name", "values"}]: each varied setting with its values in the order the batch took them."""
    axes: dict[str, list[str]] = {}
    for r in records:
        for name, value in r["variation"].items():
            seen = axes.setdefault(str(name), [])
            if str(value) not in seen:
                seen.append(str(value))
    return [{"name": n, "values": v} for n, v in axes.items()]


def cell(root: Path, record: dict) -> dict:
    folder = root / record["out"]
    frames = frames_folder(folder)
    found = scan_frames(frames)
    video = Output(folder, False).video
    return {
        "key": record["out"],
        "values": {str(k): str(v) for k, v in record["variation"].items()},
        "status": str(record.get("status", "")),
        "frames": [i for i, _ in found],
        "frame_prefix": f"{record['out']}/" + (f"{frames.name}/" if frames != folder else ""),
        "video": f"{record['out']}/{video.name}" if video.is_file() else None,
    }


def sweep_grid(root: Path, stem: str | None = None) -> dict | None:
    """The grid of the sweep at `root`, or None when `root` holds no sweep."""
    if not root.is_dir():
        return None
    records = [r for r in sweep_records(root, stem) if "/" not in r["out"].strip("/") or r["out"].count("/") == 1]
    records = [r for r in records if ".." not in r["out"].split("/") and not r["out"].startswith("/")]
    if not records:
        return None
    return {"root": str(root), "axes": axes_of(records), "cells": [cell(root, r) for r in records]}


def find_sweep(candidates: list[Path], stem: str | None) -> tuple[Path, dict] | None:
    """The first of `candidates` (the --sweep folder; else the output folder and its parent, where
    `dfm batch`'s default OUT puts the summary) that holds a sweep, with its grid."""
    for root in candidates:
        grid = sweep_grid(root, stem)
        if grid is not None:
            return root, grid
    return None


__all__ = ["axes_of", "find_sweep", "parse_label", "summary_records", "sweep_grid", "sweep_records"]
