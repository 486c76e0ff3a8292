"""Exact resume: checkpoints of the render state, and the check that one may be continued.

After frame i is written, the render state that frame i hands to frame i + 1 (the live diffusions
warped through i, the colour reference, the indices) goes to `out_dir/.dfm-state/state.pt` with a
fingerprint of everything the frames depend on. A later render of the same table with the same model,
depth model, device, dtype and package versions continues from there; anything else starts over. No
random state is saved: every draw comes from a generator seeded from its row.

The file holds plain tensors, numbers and strings only, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..table import FrameTable
from .output import HostCopy, frame_name, package_versions, png_complete, write_atomic

STATE_DIR = ".dfm-state"
STATE_FILE = "state.pt"
# what dfm writes in the state folder: the checkpoint and the record of the frames a render may have written
OWNER_FILE = "render.json"
STATE_FILES = (STATE_FILE, OWNER_FILE)
FORMAT = 1
# the packages whose arithmetic shapes the frames; another version may give other bytes
VERSIONED = ("dfm", "torch", "diffusers", "transformers", "numpy", "opencv-python-headless")


def state_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / STATE_FILE


def _file_stamp(path: object) -> str:
    """An input file by path, size and mtime (hashing a long input video on every start would cost more
    than the resume saves)."""
    if not path:
        return ""
    p = Path(str(path)).expanduser()
    try:
        st = p.stat()
    except OSError:
        return str(p)
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def fingerprint(table: FrameTable, sd, depth=None) -> dict[str, str]:
    """What must be equal for a checkpoint to continue into the same frames an uninterrupted render
    would have written."""
    src = sd.source
    versions = package_versions()
    s = table.settings
    out = {
        "table": table.content_hash(),
        "model": f"{src.kind}:{src.spec}:{sd.folder or ''}",
        "model_file": _file_stamp(src.path) if src.kind == "file" else "",
        "model_sha256": sd.sha256 or "",
        "depth_model": f"{depth.spec}:{depth.folder}" if depth is not None else "",
        "device": sd.placement.device.type,
        "dtype": str(sd.placement.dtype),
        "init_image": _file_stamp(s.init_image),
        "video_init_path": _file_stamp(s.video_init_path) if s.mode == "video" else "",
    }
    out.update({f"version:{name}": versions.get(name, "") for name in VERSIONED})
    return out


@dataclass
class Checkpoint:
    """A loaded checkpoint: the state after frame `next_frame - 1`, tensors on the CPU."""

    next_frame: int
    at: int
    buffers: dict[int, Tensor]
    color_ref: Tensor | None


class Snapshot:
    """The render state after one frame, taken on the render thread and saved on the writer thread."""

    def __init__(self, state, fingerprint: dict[str, str]) -> None:
        self.next_frame = int(state.next_frame)
        self.at = int(state.at)
        self.fingerprint = fingerprint
        self._buffers = {int(k): HostCopy(v) for k, v in state.buffers.items()}
        self._color_ref = HostCopy(state.color_ref) if state.color_ref is not None else None

    def data(self) -> dict:
        return {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "next_frame": self.next_frame,
            "at": self.at,
            "buffers": {k: v.tensor() for k, v in self._buffers.items()},
            "color_ref": self._color_ref.tensor() if self._color_ref is not None else None,
        }

    def save(self, out_dir: Path) -> None:
        """Write to a temporary name and rename: a kill leaves the previous checkpoint or this one."""
        path = state_path(out_dir)
        path.parent.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        torch.save(self.data(), buffer)
        write_atomic(path, buffer.getvalue())


def _parse(data: object, expected: dict[str, str], total: int) -> Checkpoint | str:
    """The checkpoint in `data`, or why it cannot be continued."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return "it was written by another version of dfm"
    found = data.get("fingerprint")
    if not isinstance(found, dict):
        return "it has no fingerprint"
    changed = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if changed:
        return "the scene or its setup changed (" + ", ".join(changed) + ")"
    next_frame, buffers, ref = data.get("next_frame"), data.get("buffers"), data.get("color_ref")
    if not isinstance(next_frame, int) or not 0 < next_frame <= total or not isinstance(buffers, dict):
        return "its frame index is out of range"
    if not all(isinstance(k, int) and isinstance(v, Tensor) for k, v in buffers.items()):
        return "its buffers are damaged"
    if ref is not None and not isinstance(ref, Tensor):
        return "its colour reference is damaged"
    return Checkpoint(next_frame, int(data.get("at", next_frame - 1)), buffers, ref)


def load(out_dir: Path, expected: dict[str, str], total: int, folders: tuple[Path, ...],
         rebuild: Callable[[int], Checkpoint | None] | None = None) -> tuple[Checkpoint | None, str | None]:
    """The checkpoint in `out_dir` if it may be continued, else (None, why not) - (None, None) when there
    is none. Every frame before it must still be on disk, whole, in each of `folders`; where one is gone or
    cut short, `rebuild(first bad frame)` may give the state before it (a render whose frames do not hand
    anything on), returned with a warning; else the render starts over, with a warning."""
    path = state_path(out_dir)
    if not path.is_file():
        return None, None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a checkpoint we cannot use
        return None, f"the checkpoint {path} is unreadable ({type(e).__name__}); rendering from frame 0"
    found = _parse(data, expected, total)
    if isinstance(found, str):
        return None, f"the checkpoint in {path.parent} cannot be continued: {found}; rendering from frame 0"
    bad = _first_bad_frame(found.next_frame, folders)
    if bad is None:
        return found, None
    index, frame, what = bad
    rebuilt = rebuild(index) if rebuild is not None and index > 0 else None
    if rebuilt is not None:
        return rebuilt, f"{frame} {what}; rendering again from frame {index}"
    return None, f"{frame} {what} and the render state before it was not kept; rendering again from frame 0"


def _first_bad_frame(count: int, folders: tuple[Path, ...]) -> tuple[int, Path, str] | None:
    """The first frame below `count` missing or cut short in any of `folders`: (index, path, what)."""
    for i in range(count):
        for folder in folders:
            frame = folder / frame_name(i)
            if not frame.is_file():
                return i, frame, "is gone (the checkpoint counts on it)"
            if not png_complete(frame):
                return i, frame, "is damaged (cut short, perhaps by a kill or a full disk)"
    return None


def checkpoint_frames(out_dir: Path) -> int:
    """How many frames the checkpoint in `out_dir` counts, whatever render it belongs to (0 without a
    readable one): frames dfm wrote."""
    path = state_path(out_dir)
    if not path.is_file():
        return 0
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint lists nothing
        return 0
    n = data.get("next_frame") if isinstance(data, dict) else None
    return n if isinstance(n, int) and n > 0 else 0


def owner_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / OWNER_FILE


def write_owner(out_dir: Path, frames: int) -> None:
    """Record, before the first file of a render is written or removed, that the folder holds a dfm render
    and how many frame files it may have written (frames/ and depth/ NNNNN.png below `frames`)."""
    write_atomic(owner_path(out_dir), json.dumps({"dfm_render": 1, "frames": int(frames)}) + "\n")


def owned_frames(out_dir: Path) -> int:
    """The frames the record of `write_owner` lists (0 without one)."""
    try:
        data = json.loads(owner_path(out_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    n = data.get("frames") if isinstance(data, dict) and data.get("dfm_render") == 1 else None
    return n if isinstance(n, int) and n > 0 else 0


def is_temp_file(name: str, targets: tuple[str, ...] | str) -> bool:
    """Whether `name` is a temporary file of `dfm.files.write_atomic` for one of `targets`: `.NAME.XXXXXXXX.tmp`
    (a regex pattern or names)."""
    pattern = targets if isinstance(targets, str) else "|".join(re.escape(t) for t in targets)
    return re.fullmatch(rf"\.(?:{pattern})\.[A-Za-z0-9_]{{8}}\.tmp", name) is not None


def remove(out_dir: Path) -> None:
    """Remove the state dfm wrote (checkpoint, record, their temporary files), and the folder if that
    leaves it empty; anything else in it stays."""
    folder = Path(out_dir) / STATE_DIR
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_file() and (p.name in STATE_FILES or is_temp_file(p.name, STATE_FILES)):
            p.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # something of the user's is in it


__all__ = [
    "Checkpoint",
    "Snapshot",
    "checkpoint_frames",
    "fingerprint",
    "is_temp_file",
    "load",
    "owned_frames",
    "remove",
    "state_path",
    "write_owner",
]
