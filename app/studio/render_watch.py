"""The output folder as the studio shows it: the frames that have landed, the render's progress and ETA,
what an incremental re-render kept and why, and the finished video.

A render writes `<out>/.dfm-state/job.json` before its first frame (runtime/record.py `write_job_status`:
total, todo, kept, resumed_at, started, pid; then `finished` or `stopped`). Progress is the frames written
since `started` against `todo`; without a job file (an older render, frames copied in) it is the frames on
disk against the table's length. Read-only: nothing here writes.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ...runtime.outdir import Output  # both json and paths only: no torch
from ...runtime.record import frame_name, read_job_status

FRAME = re.compile(r"^(\d{5,})\.png$")  # runtime/record.py frame_name: 00012.png
STRIP = 12  # the newest frames the page shows as thumbnails


def frames_folder(out: Path) -> Path:
    """Where the frames are: `<out>/frames/` (dfm render), else `<out>` itself (frames copied flat)."""
    frames = Output(out, False).frames
    return frames if frames.is_dir() else out


def scan_frames(folder: Path) -> list[tuple[int, float]]:
    """(index, modification time) of each frame file in `folder`, by index."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                m = FRAME.match(e.name)
                if m and e.is_file():
                    try:
                        found.append((int(m.group(1)), e.stat().st_mtime))
                    except OSError:  # removed between the listing and the stat
                        continue
    except OSError:
        return []
    return sorted(found)


def alive(pid: object) -> bool:
    """Whether a process `pid` runs (a render that was killed leaves a job file without an end)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def progress(job: dict | None, frames: list[tuple[int, float]], total_hint: int | None, now: float) -> dict:
    """{done, todo, total, running, eta_s, rate}: from the job file when there is one, else frames on disk."""
    if job is None:
        total = total_hint if total_hint is not None else len(frames)
        return {"done": len(frames), "todo": total, "total": total, "running": False, "eta_s": None, "rate": None}
    started = float(job.get("started") or 0.0)
    todo = int(job.get("todo") or 0)
    done = min(todo, sum(1 for _, mtime in frames if mtime >= started - 0.5)) if todo else 0
    ended = job.get("finished") or job.get("stopped")
    running = not ended and alive(job.get("pid"))
    elapsed = (float(ended) if ended else now) - started
    rate = done / elapsed if done and elapsed > 0 else None
    eta = (todo - done) / rate if running and rate else None
    return {"done": done, "todo": todo, "total": int(job.get("total") or 0), "running": running,
            "eta_s": eta, "rate": rate}


def status_word(job: dict | None, prog: dict) -> str:
    if job is None:
        return "no render yet" if not prog["done"] else "frames on disk"
    if job.get("finished"):
        return "finished"
    if job.get("stopped"):
        return "stopped"
    return "rendering" if prog["running"] else "interrupted"


def output_state(out: Path, total_hint: int | None = None, now: float | None = None) -> dict:
    """What the page shows of the output folder (paths relative to it, for /files/out/…)."""
    now = time.time() if now is None else now
    folder = frames_folder(out)
    frames = scan_frames(folder)
    job = read_job_status(out)
    prog = progress(job, frames, total_hint, now)
    prefix = "" if folder == out else f"{folder.name}/"
    by_time = sorted(frames, key=lambda f: (f[1], f[0]))
    newest = by_time[-1] if by_time else None
    video = Output(out, False).video
    finished = video.is_file() and (out / "manifest.json").is_file() and not prog["running"]
    return {
        "exists": out.is_dir(),
        "status": status_word(job, prog),
        "frames_on_disk": len(frames),
        "last_index": frames[-1][0] if frames else None,
        "newest": {"index": newest[0], "file": prefix + frame_name(newest[0]), "mtime": newest[1]} if newest else None,
        "strip": [{"index": i, "file": prefix + frame_name(i), "mtime": t} for i, t in by_time[-STRIP:]],
        "frame_prefix": prefix,
        "progress": prog,
        "kept": job.get("kept") if job else None,
        "resumed_at": job.get("resumed_at") if job else None,
        "pid": job.get("pid") if job else None,
        "started": job.get("started") if job else None,
        "video": {"file": video.name, "mtime": video.stat().st_mtime} if finished else None,
    }


__all__ = ["FRAME", "alive", "frames_folder", "output_state", "progress", "scan_frames", "status_word"]
