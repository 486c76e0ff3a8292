"""The record of a render's frames: which frames in a folder are those of which table, rendered under which
fingerprint. Kept after a render (`<folder>/.dfm-state/rendered.json`) for the next incremental render, and
read without torch, so `dfm render` can tell a folder is up to date before it imports the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.changes import ranges
from ..contract.files import write_atomic
from ..contract.table import FrameTable, TableError

STATE_DIR = ".dfm-state"  # dfm's own files in an output folder: a render in progress, the record, the latents
RECORD_FILE = "rendered.json"  # kept: what the folder's frames are, for incremental re-render
# kept: the sha256 of each frame as dfm wrote it ("INDEX HEX" per line, appended; the last line of an index
# wins), so a frame changed on disk since (its size and PNG end intact) is not trusted as kept
HASHES_FILE = "frames.sha256"
HASHES_BYTES = 128 << 20  # 1,000,000 frames (the compiler's limit) at 72 bytes a line, with room
# rewritten: the render in progress or last run, for whoever watches the folder (`dfm studio`): its frame count,
# what it renders and keeps, when it started and ended (docs/render.md, "The output folder")
JOB_FILE = "job.json"


def is_temp_file(name: str, targets: tuple[str, ...] | str) -> bool:
    """Whether `name` is a temporary file of `contract.files.write_atomic` for one of `targets`: `.NAME.XXXXXXXX.tmp`
    (a regex pattern or names)."""
    pattern = targets if isinstance(targets, str) else "|".join(re.escape(t) for t in targets)
    return re.fullmatch(rf"\.(?:{pattern})\.[A-Za-z0-9_]{{8}}\.tmp", name) is not None


def frame_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hashes_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / HASHES_FILE


def append_hashes(out_dir: Path, digests: list[tuple[int, str]]) -> None:
    """Log the digests of frames just written (each line whole: a torn last line is skipped on reading)."""
    path = hashes_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as f:
        f.write("".join(f"{i} {d}\n" for i, d in digests))


def read_hashes(out_dir: Path) -> dict[int, str]:
    """The digest dfm logged last for each frame of `out_dir` (none for a render made before they were)."""
    out: dict[int, str] = {}
    try:  # at most HASHES_BYTES: one line per frame of the largest scene; a longer file is read that far
        with open(hashes_path(out_dir), "rb") as f:
            text = f.read(HASHES_BYTES).decode("ascii", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and len(parts[1]) == 64:
            out[int(parts[0])] = parts[1]
    return out


def keep_hashes(out_dir: Path, keep) -> None:
    """Rewrite the digest log with the frames `keep(i)` says stay (before a render writes the others again), so
    it holds one line per frame on disk, not every frame ever written."""
    kept = {i: d for i, d in read_hashes(out_dir).items() if keep(i)}
    path = hashes_path(out_dir)
    if kept or path.exists():
        write_atomic(path, "".join(f"{i} {d}\n" for i, d in sorted(kept.items())))


def frame_intact(path: Path, digest: str | None) -> bool:
    """Whether the frame file at `path` is the one dfm wrote: whole (signature and end chunk) and, where its
    digest was logged, with those very bytes (a frame damaged inside keeps its size and its end)."""
    if not png_complete(path):
        return False
    if digest is None:
        return True  # a render from before the digests were logged: whole is all that can be known
    try:
        return frame_digest(path.read_bytes()) == digest
    except OSError:
        return False


def frame_name(index: int) -> str:
    return f"{index:05d}.png"


# PNG files end with an empty IEND chunk: a file cut short by a kill or a full disk does not
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_complete(path: Path) -> bool:
    """Whether `path` is a whole PNG file (signature and end chunk; cheap: reads 8 + 12 bytes)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return False
            f.seek(0, os.SEEK_END)
            if f.tell() < len(PNG_SIGNATURE) + len(PNG_END):
                return False
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:
        return False


def job_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / JOB_FILE


def write_job_status(out_dir: Path, status: dict) -> None:
    """Say what the render in `out_dir` does (`{"dfm_job": 1, "total", "todo", "kept", "resumed_at", "started",
    "pid"}`, then `"finished"` or `"stopped"` with a time): read by a live view, never by a render."""
    write_atomic(job_path(out_dir), json.dumps({"dfm_job": 1, **status}) + "\n")


def read_job_status(out_dir: Path) -> dict | None:
    """The folder's job status, or None when there is none (or it is not dfm's)."""
    try:
        data = json.loads(job_path(out_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("dfm_job") == 1 else None


def record_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / RECORD_FILE


@dataclass
class Record:
    """The frames a folder holds: those of `table`'s render with `fingerprint`, where `valid` (one bool per
    row) is true."""

    table: FrameTable
    fingerprint: dict[str, str]
    valid: np.ndarray


def write_record(out_dir: Path, table: FrameTable, fingerprint: dict[str, str], valid: np.ndarray) -> None:
    """Record which frames in `out_dir` are those of `table` (written atomically; the same inputs give the
    same bytes)."""
    data = {"dfm_rendered": 1, "fingerprint": fingerprint,
            "valid": [list(r) for r in ranges(np.flatnonzero(valid))], "table": table.to_json()}
    write_atomic(record_path(out_dir), json.dumps(data, ensure_ascii=False) + "\n")


def read_record(out_dir: Path) -> Record | None:
    """The record in `out_dir`, or None (none, unreadable, or of another format)."""
    try:
        data = json.loads(record_path(out_dir).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("dfm_rendered") != 1 or not isinstance(data.get("fingerprint"), dict):
            return None
        table = FrameTable.from_json(data["table"])
        valid = np.zeros(len(table), dtype=bool)
        for a, b in data["valid"]:
            valid[int(a): int(b) + 1] = True
    except (OSError, ValueError, KeyError, TypeError, TableError):
        return None
    return Record(table, {str(k): str(v) for k, v in data["fingerprint"].items()}, valid)


__all__ = ["HASHES_FILE", "PNG_END", "PNG_SIGNATURE", "RECORD_FILE", "STATE_DIR", "Record", "append_hashes",
           "frame_digest", "frame_intact", "frame_name", "hashes_path", "is_temp_file", "keep_hashes", "png_complete",
           "read_hashes", "read_record", "record_path", "write_record"]
