"""Exact resume and incremental re-render: checkpoints of the render state, the record of the frames a
folder holds, and the check that either may be continued.

After frame i is written, the render state that frame i hands to frame i + 1 (the live diffusions
warped through i, the colour reference, the indices) goes to `out_dir/.dfm-state/state.pt` with a
fingerprint of everything the frames depend on. A later render of the same table with the same model,
depth model, device, dtype and package versions continues from there; anything else starts over. No
random state is saved: every draw comes from a generator seeded from its row.

The file holds plain tensors, numbers and strings only, so it loads with `torch.load(weights_only=True)`.

For incremental re-render two more things stay after a render succeeds (the checkpoint does not):

- `rendered.json`, the record: the table whose frames the folder holds, the fingerprint they were
  rendered with, and which of them are valid (all after a finished render; during one, the frames it kept;
  the checkpoint adds the frames rendered since). A later render compares its table with this one
  (`dfm.contract.changes.compare`) and keeps the frames the edit cannot change.
- `latents/NNNNN.latents` (2D and 3D): the final latents of diffusion NNNNN, which the VAE decodes into
  the image the next frames start from. A restart at frame k replays frames 0..k-1 without the sampler:
  every warp, effect and blend again, each diffusion decoded from its latents, so the state at k is the
  one the first render had. Each file is a small header and the tensor's exact bytes, byte-shuffled and
  zlib-compressed (no pickle).
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..contract.table import FrameTable
from .fingerprint import fingerprint as build_fingerprint
from .output import HostCopies, HostCopy, frame_name, png_complete, write_atomic
from .record import (  # noqa: F401 - the record is re-exported: resume's callers read it here
    RECORD_FILE,
    STATE_DIR,
    Record,
    frame_intact,
    is_temp_file,
    read_hashes,
    read_record,
    record_path,
    write_record,
)
from .speedups import describe, recorded

STATE_FILE = "state.pt"
# what dfm writes in the state folder: the checkpoint and the record of the frames a render may have written
OWNER_FILE = "render.json"
STATE_FILES = (STATE_FILE, OWNER_FILE)  # removed when a render succeeds
LATENTS_DIR = "latents"  # kept: the latents of each diffusion (2D/3D), NNNNN.latents
LATENTS_SUFFIX = ".latents"
FORMAT = 1


def state_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / STATE_FILE


def fingerprint(table: FrameTable, sd, depth=None) -> dict[str, str]:
    """What must be equal for a checkpoint to continue into the same frames an uninterrupted render
    would have written (runtime/fingerprint.py, from the model `sd` and the depth model as they resolved)."""
    src, placement = sd.source, sd.placement
    s = table.settings
    # a model no render has set up yet runs the default switches (a Ray worker's, say)
    switches = recorded(sd) or describe(None, placement.device.type, (s.width, s.height))
    return build_fingerprint(table, model_kind=src.kind, model_spec=src.spec, model_path=src.path,
                             model_folder=sd.folder, model_sha256=sd.sha256,
                             depth=(depth.spec, depth.folder) if depth is not None else None,
                             device_type=placement.device.type, dtype=str(placement.dtype), speedups=switches)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the state after frame `next_frame - 1`, tensors on the CPU."""

    next_frame: int
    at: int
    buffers: dict[int, Tensor]
    color_ref: Tensor | None


class Snapshot:
    """The render state after one frame, taken on the render thread and saved on the writer thread."""

    def __init__(self, state, fingerprint: dict[str, str], copies: HostCopies | None = None) -> None:
        """`copies` (kept by the caller from frame to frame) reuses the host copy of a tensor the previous
        snapshot copied already: the colour reference, a diffusion that was not warped since."""
        self.next_frame = int(state.next_frame)
        self.at = int(state.at)
        self.fingerprint = fingerprint
        copy = copies.get if copies is not None else HostCopy
        self._buffers = {int(k): copy(v) for k, v in state.buffers.items()}
        self._color_ref = copy(state.color_ref) if state.color_ref is not None else None
        if copies is not None:
            copies.retain([*state.buffers.values(), *([state.color_ref] if state.color_ref is not None else [])])
        self._copies = copies

    def copy_of(self, tensor: Tensor) -> HostCopy | None:
        """This snapshot's host copy of `tensor` if it holds one (the frame written is often a buffer)."""
        return self._copies.find(tensor) if self._copies is not None else None

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
    digests = {f: read_hashes(f.parent) if f.name == "frames" else {} for f in folders}  # frames/ has a log
    for i in range(count):
        for folder in folders:
            frame = folder / frame_name(i)
            if not frame.is_file():
                return i, frame, "is gone (the checkpoint counts on it)"
            if not png_complete(frame):
                return i, frame, "is damaged (cut short, perhaps by a kill or a full disk)"
            if not frame_intact(frame, digests[folder].get(i)):
                return i, frame, "is damaged (its bytes are not those dfm wrote)"
    return None


def checkpoint_info(out_dir: Path) -> tuple[dict[str, str] | None, int]:
    """The fingerprint and the frame count of the checkpoint in `out_dir`, whatever render it belongs to
    ((None, 0) without a readable one)."""
    path = state_path(out_dir)
    if not path.is_file():
        return None, 0
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint lists nothing
        return None, 0
    if not isinstance(data, dict):
        return None, 0
    n, fp = data.get("next_frame"), data.get("fingerprint")
    return (fp if isinstance(fp, dict) else None), (n if isinstance(n, int) and n > 0 else 0)


def checkpoint_frames(out_dir: Path) -> int:
    """How many frames the checkpoint in `out_dir` counts, whatever render it belongs to (0 without a
    readable one): frames dfm wrote."""
    return checkpoint_info(out_dir)[1]


# ---- the record of the frames a folder holds (incremental re-render) ----------------------------------------


# ---- the latents of each diffusion ---------------------------------------------------------------------------

_LATENTS_MAGIC = b"dfm-latents 1\n"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def latents_dir(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / LATENTS_DIR


def latents_path(out_dir: Path, index: int) -> Path:
    return latents_dir(out_dir) / f"{index:05d}{LATENTS_SUFFIX}"


def encode_latents(latents: Tensor) -> bytes:
    """A CPU tensor as bytes: a header line, then its exact bytes shuffled (all first bytes of the
    elements, then all second bytes, ...) and zlib-compressed. Lossless, and the same tensor gives the same
    bytes."""
    t = latents.detach().contiguous()
    size = t.element_size()
    raw = t.view(torch.uint8).numpy().reshape(-1, size).T.tobytes()
    header = json.dumps({"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)})
    return _LATENTS_MAGIC + header.encode("ascii") + b"\n" + zlib.compress(raw, 6)


def decode_latents(data: bytes) -> Tensor:
    """The tensor of `encode_latents` (ValueError if the bytes are not one)."""
    if not data.startswith(_LATENTS_MAGIC):
        raise ValueError("not a dfm latents file")
    header, _, body = data[len(_LATENTS_MAGIC):].partition(b"\n")
    meta = json.loads(header)
    dtype, shape = _DTYPES[meta["dtype"]], tuple(int(x) for x in meta["shape"])
    size = torch.empty((), dtype=dtype).element_size()
    raw = np.frombuffer(zlib.decompress(body), dtype=np.uint8)
    count = int(np.prod(shape)) if shape else 1
    if raw.size != count * size:
        raise ValueError("the latents file is cut short")
    flat = np.ascontiguousarray(raw.reshape(size, count).T)
    return torch.from_numpy(flat).view(dtype).reshape(shape).clone()


def save_latents(out_dir: Path, index: int, latents: Tensor) -> None:
    write_atomic(latents_path(out_dir, index), encode_latents(latents))


def load_latents(out_dir: Path, index: int) -> Tensor | None:
    """The latents of diffusion `index`, or None if there is no whole file of them."""
    try:
        return decode_latents(latents_path(out_dir, index).read_bytes())
    except (OSError, ValueError, KeyError, TypeError, zlib.error):
        return None


def latents_files(out_dir: Path) -> dict[int, Path]:
    """The latents files dfm wrote in `out_dir`, by index (only names of dfm's form: NNNNN.latents)."""
    folder = latents_dir(out_dir)
    if not folder.is_dir():
        return {}
    return {int(p.name[:5]): p for p in folder.iterdir()
            if re.fullmatch(r"\d{5}" + re.escape(LATENTS_SUFFIX), p.name) and p.is_file()}


def remove_latents(out_dir: Path, keep: Callable[[int], bool], owned: int) -> None:
    """Remove the latents files dfm wrote (below `owned`, the frame count its manifest or state lists) whose
    index `keep` refuses, their temporary files, and the folder if that leaves it empty."""
    folder = latents_dir(out_dir)
    if not folder.is_dir():
        return
    for index, p in latents_files(out_dir).items():
        if index < owned and not keep(index):
            p.unlink(missing_ok=True)
    for p in folder.iterdir():
        if is_temp_file(p.name, r"\d{5}" + re.escape(LATENTS_SUFFIX)) and p.is_file():
            p.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # latents stay in it (or something of the user's)


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


def remove(out_dir: Path) -> None:
    """Remove the state of a render in progress dfm wrote (checkpoint, owner record, their temporary files,
    and those of the record of frames), and the folder if that leaves it empty; the record of frames and
    the latents stay, and so does anything else in it."""
    folder = Path(out_dir) / STATE_DIR
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_file() and (p.name in STATE_FILES or is_temp_file(p.name, (*STATE_FILES, RECORD_FILE))):
            p.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # something of the user's is in it


__all__ = [
    "Checkpoint",
    "Record",
    "Snapshot",
    "checkpoint_frames",
    "checkpoint_info",
    "decode_latents",
    "encode_latents",
    "latents_files",
    "load_latents",
    "read_record",
    "remove_latents",
    "save_latents",
    "write_record",
    "fingerprint",
    "is_temp_file",
    "load",
    "owned_frames",
    "remove",
    "state_path",
    "write_owner",
]
