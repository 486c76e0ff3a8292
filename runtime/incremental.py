"""Incremental re-render: which frames of the render already in a folder a new render keeps.

Every render leaves the record of its frames (`resume.Record`: the table, the fingerprint, which rows are
valid) and, in 2D and 3D, the latents of its diffusions. A render of another table into the same folder
compares the two with the dependency rule (`dfm.contract.changes.compare`, which `dfm diff` uses too) and keeps a
frame when

- its render cannot differ (the rule), it was valid in the previous render, and its file (and depth map)
  is on disk and whole;
- in 2D and 3D, besides: every frame before it is kept, and the latents of every diffusion before the
  first frame this run renders were kept. The state there is rebuilt by replaying the frames before it
  without the sampler (`FrameRenderer.replay`), so the frames rendered next are the bytes a full render
  would write.

Any difference in the fingerprint besides the table (the model, the device, a package version, an input
file) renders every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

from ..contract import changes
from ..contract.changes import ranges_text, span
from ..contract.table import FrameTable
from . import resume
from .record import frame_intact, frame_name, read_hashes


@dataclass
class Plan:
    """What a render keeps of the previous one in its folder."""

    todo: np.ndarray  # one bool per row: this run renders it (the others are on disk and kept)
    message: str  # what is kept and why, for the user
    latents: Callable[[int], Tensor] | None = None  # 2D/3D: the latents the replay to the first rendered frame decodes
    keep_video: bool = False  # nothing changes the video: the previous one stays
    changes: changes.Changes | None = field(default=None, repr=False)


_SETUP_WORDS = {
    "model": "the model", "model_file": "the model file", "model_sha256": "the model's sha256",
    "depth_model": "the depth model", "device": "the device", "dtype": "the dtype", "init_image": "the init image file",
    "video_init_path": "the input video file", "speedups": "the speed-up switches",
    "network_files": "the LoRA or embedding files",  # runtime/networks.py's entry
}


def setup_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What differs between two fingerprints besides the table, in words ("the device (cuda → cpu)")."""
    out = []
    for key in sorted(old.keys() | new.keys()):
        if key == "table" or old.get(key) == new.get(key):
            continue
        a, b = old.get(key) or "none", new.get(key) or "none"
        if key.startswith("version:"):
            out.append(f"{key.removeprefix('version:')} {a} → {b}")
        elif key in ("device", "dtype", "speedups"):
            out.append(f"{_SETUP_WORDS[key]} ({a} → {b})")
        else:
            out.append(_SETUP_WORDS.get(key, key))
    return out


def whole_frames(rows: np.ndarray, folders: tuple[Path, ...], stop_at_first: bool) -> tuple[np.ndarray, Path | None]:
    """`rows` (bools) less the rows whose file is missing, cut short or (a frame) not the bytes dfm wrote in
    one of `folders`; and the first such file. With `stop_at_first`, every row after it is dropped too (unchecked)."""
    out = rows.copy()
    first_bad = None
    digests = {f: read_hashes(f.parent) if f.name == "frames" else {} for f in folders}  # frames/ has a log
    for i in np.flatnonzero(rows):
        bad = next((f / frame_name(int(i)) for f in folders
                    if not frame_intact(f / frame_name(int(i)), digests[f].get(int(i)))), None)
        if bad is None:
            continue
        out[i] = False
        first_bad = first_bad or bad
        if stop_at_first:
            out[i:] = False
            break
    return out, first_bad


def needs_latents(table: FrameTable) -> np.ndarray:
    """One bool per row (2D/3D): the row's diffusion runs the sampler, so a replay through it needs its
    latents. A diffused row with no steps to run keeps its source frame instead (no latents); row 0 starts
    from the init image or from noise."""
    cols = table.columns
    n = len(table)
    diffused = np.asarray(cols["diffused"], dtype=bool)
    steps = np.asarray(cols["effective_steps"])
    has_source = np.arange(n) > 0
    if table.settings.init_image:
        has_source[:1] = True
    return diffused & ~(has_source & (steps < 1))


def _first(mask: np.ndarray, default: int) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else default


def plan(table: FrameTable, fingerprint: dict[str, str], record: resume.Record | None, root: Path,
         folders: tuple[Path, ...], finished: bool) -> Plan | None:
    """What a render of `table` keeps of the frames `record` describes in `root` (None without a record:
    nothing to compare with). `folders` hold the frame files a kept frame needs (frames/, depth/);
    `finished` says the previous render completed (its video is whole)."""
    if record is None:
        return None
    n = len(table)
    everything = np.ones(n, dtype=bool)
    setup = setup_changes(record.fingerprint, fingerprint)
    if setup:
        return Plan(everything, f"all {n} frames rendered: " + ", ".join(setup) + " changed")
    old = record.table
    valid = record.valid.copy()
    ck_fingerprint, ck_frames = resume.checkpoint_info(root)
    if ck_frames and ck_fingerprint == record.fingerprint:
        valid[: min(ck_frames, len(valid))] = True  # rendered since the record was written
    found = changes.compare(old, table)
    common = min(n, len(old))
    keep = np.zeros(n, dtype=bool)
    keep[:common] = valid[:common] & ~found.affected[:common]
    camera = not found.independent
    keep, damaged = whole_frames(keep, folders, stop_at_first=camera)
    complete = finished and bool(record.valid.all()) and not ck_frames  # its video holds every frame
    if camera:
        return _camera_plan(table, found, valid, keep, damaged, root, complete)
    todo = ~keep
    return Plan(todo, _independent_message(found, todo, valid, damaged), None,
                keep_video=_keeps_video(found, todo, complete), changes=found)


def _camera_plan(table: FrameTable, found: changes.Changes, valid: np.ndarray, keep: np.ndarray,
                 damaged: Path | None, root: Path, complete: bool) -> Plan:
    """2D/3D: keep a prefix of frames, as long as the latents of every diffusion in it were kept."""
    n = len(table)
    start = _first(~keep, n)
    missing = None
    needed = needs_latents(table)
    for d in np.flatnonzero(needed[:start]):
        if resume.load_latents(root, int(d)) is None:
            missing, start = int(d), int(d)
            break
    keep[start:] = False
    todo = ~keep
    common = min(n, found.old_frames)
    change = found.first_frame
    causes = []  # (frame, words) of each reason to stop keeping
    if change is not None:
        causes.append((change, f"the first change is {found.first_change()}"))
    invalid = _first(~valid[:common], common)
    if invalid < common:
        # the render in the folder was stopped before it wrote this frame: there is nothing of it to keep
        stopped = "before its first frame" if invalid == 0 else f"after frame {invalid - 1}"
        causes.append((invalid, f"the render in this folder was stopped {stopped}"))
    if damaged is not None:
        causes.append((int(damaged.stem), f"{damaged.parent.name}/{damaged.name} is missing or damaged"))
    if missing is not None:
        causes.append((missing, f"the latents of diffusion {missing} were not kept"))
    causes.sort(key=lambda c: c[0])
    if start >= n:
        message = f"all {n} frames kept: {found.first_change()}"
    else:
        why = "; ".join(words for frame, words in causes if frame >= start) or "the frames were not on disk"
        message = f"all {n} frames rendered: {why}" if start == 0 else f"frames {span(0, start - 1)} kept: {why}"
    if found.old_frames > n:
        message += f"; frames {span(n, found.old_frames - 1)} are past the new end and removed"
    latents = (lambda d: _load(root, d)) if start > 0 else None
    return Plan(todo, message, latents, _keeps_video(found, todo, complete), found)


def _load(root: Path, index: int) -> Tensor:
    latents = resume.load_latents(root, index)
    if latents is None:  # checked when planning; gone since
        raise RuntimeError(f"the latents of diffusion {index} disappeared from {resume.latents_dir(root)}")
    return latents


def _independent_message(found: changes.Changes, todo: np.ndarray, valid: np.ndarray, damaged: Path | None) -> str:
    n = len(todo)
    rendered = np.flatnonzero(todo)
    why = []
    if found.first_frame is not None:
        why.append(f"the first change is {found.first_change()}")
    if not valid.all():
        why.append("the previous render had not rendered them all")
    if damaged is not None:
        why.append(f"{damaged.parent.name}/{damaged.name} is missing or damaged")
    reason = "; ".join(why) or found.first_change()
    if len(rendered) == 0:
        message = f"all {n} frames kept: {reason}"
    elif len(rendered) == n:
        message = f"all {n} frames rendered: {reason}"
    else:
        message = f"frames {ranges_text(rendered)} rendered, the other {n - len(rendered)} kept: {reason}"
    if found.old_frames > n:
        message += f"; frames {span(n, found.old_frames - 1)} are past the new end and removed"
    return message


def _keeps_video(found: changes.Changes, todo: np.ndarray, complete: bool) -> bool:
    """The previous video stays when no frame changes, none is added or removed, the video's settings are
    the same and the previous render completed (so its video holds every frame)."""
    return complete and not todo.any() and found.old_frames == found.frames and not found.video_settings


__all__ = ["Plan", "needs_latents", "plan", "setup_changes", "whole_frames"]
