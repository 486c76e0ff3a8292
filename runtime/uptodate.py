"""Is the render in a folder already this render? Decided without torch, before the runtime is imported.

A rerun after an edit that changes no frame (a comment, a setting no frame reads) renders nothing: the render
job would keep every frame and load no model, but importing torch and diffusers alone takes seconds. This
check gives the job's answer where it can be had from the folder's record and plain values: the same
fingerprint (runtime/fingerprint.py, built as `resume.fingerprint` builds it from a loaded model), every frame
of the record valid and whole on disk, a finished render's manifest, no checkpoint in progress, and no
change the frames or the video read (`changes.compare`). Where any of that cannot be known without torch (a
GPU that might be there, a depth model to resolve), it answers None and the render job decides.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from ..contract.changes import compare
from ..contract.modes import MODES
from ..contract.table import FrameTable
from .errors import RenderError
from .fingerprint import fingerprint
from .model_source import model_identity, model_request, resolve_source
from .outdir import STATE_DIR, dfm_manifest
from .record import frame_intact, frame_name, read_hashes, read_record
from .speedups import Speedups, describe

# the state of a render in progress (resume.STATE_FILE): while it is there, the job decides
_CHECKPOINT = "state.pt"
# where a GPU torch could use shows itself on Linux (NVIDIA, WSL, ROCm): with none, `auto` is the CPU
_GPU_NODES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")
_DTYPES = {"fp32": "torch.float32", "bf16": "torch.bfloat16"}  # on the CPU (fp16 there is refused)


def cpu_placement(device: str, dtype: str) -> tuple[str, str] | None:
    """(device type, dtype name) where `device` and `dtype` surely resolve to the CPU as runtime/device.py
    resolves them; None where that takes torch to know (a GPU may be there, or another device was asked)."""
    want = device.strip().lower()
    if want == "auto":
        if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
            return None  # MPS on a Mac, other platforms: torch decides
        if any(os.path.exists(node) for node in _GPU_NODES):
            return None
    elif want != "cpu":
        return None
    d = dtype.strip().lower()
    return ("cpu", "torch.float32") if d == "auto" else (("cpu", _DTYPES[d]) if d in _DTYPES else None)


def kept_whole(table: FrameTable, out_dir: Path, *, model: str | None, device: str, dtype: str,
               speed: Speedups | None, scene_path: str, allow_pickle: bool) -> str | None:
    """The job's message ("all N frames kept: ...") when a render of `table` into `out_dir` would keep
    every frame and the video, known without torch; None when it would render something, or when only the
    render job can tell."""
    s = table.settings
    out = Path(out_dir)
    mode = MODES.get(str(s.mode))
    if mode is None or (mode.uses_depth and (s.use_depth_warping or s.save_depth_maps)):
        return None  # the depth model's folder is resolved by the runtime
    placement = cpu_placement(device, dtype)
    if placement is None or dfm_manifest(out) is None or (out / STATE_DIR / _CHECKPOINT).exists():
        return None
    record = read_record(out)
    if record is None or len(record.table) != len(table) or not record.valid.all():
        return None
    try:
        asked = model_request(s.model, s.model_sha256, override=model, scene_path=scene_path)
        source = resolve_source(asked.spec, asked.base_dirs)
        folder, sha256 = model_identity(source, allow_pickle=allow_pickle, sha256=asked.sha256)
    except RenderError:
        return None  # the render job says what is wrong
    found = fingerprint(table, model_kind=source.kind, model_spec=source.spec, model_path=source.path,
                        model_folder=folder, model_sha256=sha256, depth=None, device_type=placement[0],
                        dtype=placement[1], speedups=describe(speed, placement[0], (s.width, s.height)))
    def setup(fp: dict[str, str]) -> dict[str, str]:  # the table itself is compared below, by what frames read
        return {k: v for k, v in fp.items() if k != "table"}

    if setup(found) != setup(record.fingerprint):
        return None
    edit = compare(record.table, table)
    if edit.first_frame is not None or edit.video_settings:
        return None
    digests = read_hashes(out)
    if not all(frame_intact(out / "frames" / frame_name(i), digests.get(i)) for i in range(len(table))):
        return None  # a frame missing, cut short or changed: the job renders it again
    if s.save_video and mode.animated and not (out / "video.mp4").is_file():
        return None
    return f"all {len(table)} frames kept: {edit.first_change()}"


__all__ = ["cpu_placement", "kept_whole"]
