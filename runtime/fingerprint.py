"""The fingerprint of a render: what must be equal for two renders of one table to write the same bytes.

A checkpoint is continued, and the frames of an earlier render kept, only where the fingerprint is equal
(runtime/resume.py, runtime/incremental.py). It is built here from plain values, without torch, so that
`dfm render` can tell that a folder is already up to date before it imports the runtime (runtime/uptodate.py);
`resume.fingerprint` builds it from a loaded model the same way.
"""

from __future__ import annotations

from pathlib import Path

from ..contract import hybrid
from ..contract.controlnet import active_units
from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable

MAX_STAMPED_FILES = 100_000  # a folder of control frames is stamped by its files, up to this many
# the packages whose arithmetic shapes the frames; another version may give other bytes
VERSIONED = ("dfm", "torch", "diffusers", "transformers", "numpy", "opencv-python-headless")


def file_stamp(path: object) -> str:
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


def package_versions() -> dict[str, str]:
    """The installed version of each package a render's bytes depend on (read from the package metadata: no
    import of them); a package that is not installed is left out."""
    from importlib import metadata

    out = {}
    for name in ("dfm", "torch", "diffusers", "transformers", "numpy", "safetensors", "opencv-python-headless",
                 "imageio-ffmpeg"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def network_files(table: FrameTable) -> dict[str, str]:
    """The fingerprint entry of the LoRA and embedding files (path, size, mtime), so that a file changed in
    place renders again rather than resuming or keeping frames made with the old one."""
    settings = table.settings
    paths = [*(settings.lora or ()), *(settings.embedding or ())]
    stamps = []
    for p in paths:
        path = Path(str(p)).expanduser()
        try:
            st = path.stat()
            stamps.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append(str(p))  # a hub id (its revision is the cache's), or a file that is gone
    return {"network_files": "|".join(stamps)} if stamps else {}


def controlnet_files(table: FrameTable) -> dict[str, str]:
    """The fingerprint entry of each active ControlNet unit's inputs: its model (a file, or a folder's
    files), its source and mask (a folder of frames by its files), so that one replaced in place renders again.
    A scene without units has no entry (its fingerprint is what it was before units existed)."""
    stamps = []
    for unit in active_units(table.settings):
        for path in (unit.model, unit.source, unit.mask):
            stamps.append(_tree_stamp(path) if path else "")
    return {"controlnet_files": "|".join(stamps)} if stamps else {}


def _tree_stamp(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_dir():
        return file_stamp(p) if p.exists() else path  # a hub id (the cache's revision), or a missing file
    try:
        files = sorted(f for f in p.rglob("*") if f.is_file())[:MAX_STAMPED_FILES]
    except OSError:
        return str(p)
    return ";".join(file_stamp(f) for f in files)


def fingerprint(table: FrameTable, *, model_kind: str, model_spec: str, model_path: Path | None,
                model_folder: Path | None, model_sha256: str | None, depth: tuple[str, Path] | None,
                device_type: str, dtype: str, speedups: str) -> dict[str, str]:
    """The fingerprint of a render of `table` with this model (where it is, its checked sha256), this depth
    model (spec, folder), on this device type in this dtype (torch's name: "torch.float32"), under these
    speed-up switches (runtime/speedups.py `describe`)."""
    s = table.settings
    versions = package_versions()
    out = {
        "table": table.content_hash(),
        "model": f"{model_kind}:{model_spec}:{model_folder or ''}",
        "model_file": file_stamp(model_path) if model_kind == "file" else "",
        "model_sha256": model_sha256 or "",
        "depth_model": f"{depth[0]}:{depth[1]}" if depth is not None else "",
        "device": device_type,
        "dtype": dtype,
        # attention kernel, memory format, VAE tiling, torch.compile: each changes bytes
        "speedups": speedups,
        "init_image": file_stamp(s.init_image),
        # the input video, in video mode and as the hybrid video of 2D/3D
        "video_init_path": file_stamp(s.video_init_path)
        if mode_of(s.mode).reads_video or (mode_of(s.mode).camera and hybrid.uses_video(s)) else "",
    }
    out.update({f"version:{name}": versions.get(name, "") for name in VERSIONED})
    out.update(network_files(table))  # the LoRA and embedding files' stamps: one edited in place renders again
    out.update(controlnet_files(table))
    return out


__all__ = ["VERSIONED", "controlnet_files", "file_stamp", "fingerprint", "network_files", "package_versions"]
