"""What the render tests compare and how they interrupt a render: shared by the resume, safety and
incremental tests."""

from __future__ import annotations

from pathlib import Path

# the files of a render that say when it ran, so differ between two renders of the same frames
TIMED = ("manifest.json", ".dfm-state/job.json")


class Boom(RuntimeError):
    """A crash injected into a render through its progress callback."""


def stop_at(k: int, exc: type[BaseException] = Boom):
    """A progress callback that raises `exc` once frame k is done."""

    def progress(done: int, total: int) -> None:
        if done == k:
            raise exc(f"stopped after {done} of {total}")

    return progress


def outputs(out: Path) -> dict[str, bytes]:
    """Every file a render leaves that must be byte-identical: frames, depth maps, the video."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("frames/*")}
    files |= {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("depth/*")}
    if (out / "video.mp4").exists():
        files["video.mp4"] = (out / "video.mp4").read_bytes()
    return files


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under `out`, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
