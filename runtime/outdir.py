"""The output folder of a render: whose it is, what dfm may delete in it, whether it can be written.

dfm writes over and removes only files of its own renders: a folder is dfm's when it holds a finished
render's manifest or the state of one in progress; the frames dfm owns are those its manifest, its record
or its checkpoint counts. A render also starts in a folder whose every file the commands that write there
before it (`dfm plot`, `dfm preview`) listed in its record of dfm's files (`OWNED_FILE`); it never touches
those. The folder layout (`Output`) and these rules are shared by the local render and the sharded one
(scaleout/shard.py).

No torch here (runtime/resume.py, which imports it, is imported where it is needed): `dfm plot` and
`dfm preview` record their files, and `dfm render` checks its folder, before anything slow loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..contract.controlnet import control_folder
from ..contract.errors import UserError
from ..contract.files import read_limited, write_atomic
from .encoder import temp_paths
from .errors import RenderError
from .record import STATE_DIR, is_temp_file  # noqa: F401 - STATE_DIR: re-exported, the folder's layout

# dfm's record of the files it wrote in a folder outside a render (plot.png, preview.mp4, ...): JSON,
# {"dfm_files": 1, "files": [names]}
OWNED_FILE = ".dfm-files.json"
UPSCALED_VIDEO = "video_upscaled.mp4"  # a render's upscaled video (`upscale_model`), beside its video.mp4


def unwritable(root: Path, e: OSError) -> RenderError:
    return RenderError(
        f"cannot write to the output folder {root}: {e.strerror or e}",
        "choose a writable folder (--out), or check its permissions and free disk space",
    )


def dfm_manifest(root: Path) -> dict | None:
    """The manifest of a finished dfm render in `root`, or None."""
    try:
        data = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "dfm_manifest" in data else None


def owned_frames(root: Path) -> int:
    """How many frame files (NNNNN.png from 0) dfm may have written in `root`: the count of its manifest,
    of its record of a render in progress, or of its checkpoint, whichever is largest."""
    from . import resume

    found = dfm_manifest(root)
    listed = found.get("frames") if found else None
    return max(listed if isinstance(listed, int) else 0, resume.owned_frames(root), resume.checkpoint_frames(root))


def owned_files(folder: Path) -> set[str]:
    """The names `record_files` listed in `folder` (none without a readable record)."""
    try:  # a few names: a file of over a MiB (or nested JSON) is no record dfm wrote
        data = json.loads(read_limited(Path(folder) / OWNED_FILE, 1 << 20).decode("utf-8"))
    except (OSError, ValueError, RecursionError, UserError):
        return set()
    files = data.get("files") if isinstance(data, dict) and data.get("dfm_files") == 1 else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def record_files(folder: Path, names: Iterable[str]) -> None:
    """Add `names` (files dfm is about to write in `folder`, outside a render) to its record, making the
    folder if needed: recorded before the write, so a write cut short leaves nothing unlisted. The record
    is rewritten atomically, and only when it gains a name."""
    folder = Path(folder)
    have = owned_files(folder)
    if set(names) <= have:
        return
    data = {"dfm_files": 1, "files": sorted(have | set(names))}
    write_atomic(folder / OWNED_FILE, json.dumps(data, indent=1) + "\n")


def check_names_are_dfms(root: Path, names: dict[str, str]) -> None:
    """Refuse, before anything renders, a name this render writes (name -> what writes it) that a file or
    folder of the user's holds: neither the last render's manifest (`finished`, `control_frames`) nor dfm's
    record of its files lists it. A render replaces only what dfm wrote."""
    manifest = dfm_manifest(root) or {}
    ours = owned_files(root)
    for key in ("finished", "control_frames"):
        listed = manifest.get(key)
        if isinstance(listed, list):
            ours |= {n for n in listed if isinstance(n, str)}
    units = manifest.get("controlnet")
    if "control_frames" not in manifest and isinstance(units, list):  # a manifest from before `control_frames`:
        for u in units:  # its units' folders, where they hold only dfm's frames
            if isinstance(u, dict) and isinstance(u.get("unit"), int):
                folder = control_folder(u["unit"])
                if _only_frames(root / folder):
                    ours.add(folder)
    for name, what in names.items():
        if (root / name).exists() and name not in ours:
            raise RenderError(f"{root / name} was not written by dfm, and this scene's {what} writes there",
                              "move or rename it, or render into another folder (--out)")


def _only_frames(folder: Path) -> bool:
    """Whether `folder` holds nothing but files named as dfm names frames (NNNNN.png)."""
    try:
        return all(re.fullmatch(r"\d{5,}\.png", p.name) and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def foreign_files(root: Path) -> list[str]:
    """The names in `root` that are not dfm's: everything when it holds no dfm render, less the record of
    dfm's files, the files it lists and their temporary files (a write cut short)."""
    if dfm_manifest(root) is not None or (root / STATE_DIR).is_dir():
        return []
    listed = owned_files(root)
    ours = {OWNED_FILE} | listed
    return sorted(p.name for p in root.iterdir()
                  if p.name not in ours and not is_temp_file(p.name, (OWNED_FILE, *listed)))


def check_output(root: Path) -> None:
    """Refuse, changing nothing, an output folder a render may not write into: a file, or a folder holding
    files that are not dfm's (see `foreign_files`). Cheap and torch-free: the CLI calls it before loading."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RenderError(f"the output {root} is a file, not a folder", "choose a new or empty folder (--out)")
    others = foreign_files(root) if root.is_dir() else []
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise RenderError(
            f"the output folder {root} is not empty and holds no dfm render: {', '.join(others[:3])}{more} "
            "not written by dfm",
            "choose an empty or new folder (--out): dfm writes over and removes only files of its own renders",
        )


def open_output(root: Path) -> bool:
    """Check the output folder before anything loads, changing nothing in it: a folder (made now if it
    does not exist), writable, and empty, a dfm render's or holding only files dfm recorded as its own.
    True if this call made it."""
    check_output(root)
    made = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(root, e) from None
    if not os.access(root, os.W_OK | os.X_OK):
        if made:
            remove_if_empty(root)
        raise unwritable(root, PermissionError(13, "permission denied"))
    return made


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


@dataclass(frozen=True)
class Output:
    """Where a render's files go."""

    root: Path
    save_maps: bool  # depth/ gets one map per frame

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def depth(self) -> Path:
        return self.root / "depth"

    @property
    def video(self) -> Path:
        return self.root / "video.mp4"

    @property
    def resumable(self) -> tuple[Path, ...]:
        """The folders whose frames a checkpoint counts on."""
        return (self.frames, self.depth) if self.save_maps else (self.frames,)


def clear_old_frames(folder: Path, kept: Callable[[int], bool], owned: int) -> None:
    """Remove the frame files dfm wrote (below `owned`, the count its manifest or state lists) that this
    render does not keep: stale ones of an earlier render, or those a resume or an incremental render
    rewrites. Other files stay."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if re.fullmatch(_FRAME_PATTERN, p.name) and int(p.name[:5]) < owned and not kept(int(p.name[:5])) \
                and p.is_file():
            p.unlink()


_FRAME_PATTERN = r"\d{5}\.png"
_ROOT_FILES = ("table.csv", "manifest.json")


def clear_temp_files(out: Output) -> None:
    """Remove the temporary files a killed render leaves: dfm writes every file under a temporary name of
    its own (`.NAME.XXXXXXXX.tmp` of a name it writes, the video's `encoder.temp_paths`) and renames it, so
    none of them is a finished file. Temporary files of other names are not dfm's and stay."""
    from . import resume

    video_temps = {p.name for p in temp_paths(out.video)}
    for folder, targets in ((out.root, "|".join(re.escape(n) for n in _ROOT_FILES)),
                            (out.frames, _FRAME_PATTERN), (out.depth, _FRAME_PATTERN),
                            (out.root / STATE_DIR,
                             "|".join(re.escape(n) for n in (*resume.STATE_FILES, resume.RECORD_FILE)))):
        if folder.is_dir():
            for p in folder.iterdir():
                ours = is_temp_file(p.name, targets) or (folder == out.root and p.name in video_temps)
                if ours and p.is_file():
                    p.unlink()
