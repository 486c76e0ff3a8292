"""Facts about input media that the compiler and the runtime both need, owned by neither (no torch).

Video mode uses source frames `extract_from_frame`, then every `extract_nth_frame`-th one, up to
`extract_to_frame` (inclusive; -1 = the last): the compiler counts them to size the scene (Deforum
renders as many frames as the extraction gives), the runtime streams them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import UserError


class MediaError(UserError, ValueError):
    """A media file that cannot be read."""


@dataclass(frozen=True)
class Selection:
    """Which source frames are used: range(start, stop, step) of the source frame indices."""

    start: int
    step: int
    stop: int  # exclusive

    @property
    def count(self) -> int:
        return len(range(self.start, self.stop, self.step))

    def source_index(self, row: int) -> int:
        return self.start + row * self.step


def select(total: int, extract_from: int, extract_nth: int, extract_to: int) -> Selection:
    """The selection for a video of `total` frames; extract_to -1 (or past the end) means the last frame."""
    last = total - 1 if extract_to < 0 else min(int(extract_to), total - 1)
    return Selection(max(0, int(extract_from)), max(1, int(extract_nth)), last + 1)


def count_frames(path: Path) -> int:
    """The number of frames in `path` (ffmpeg reads the stream once; cached by path, size and mtime)."""
    st = path.stat()
    return _count_frames(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _count_frames(path: str, size: int, mtime_ns: int) -> int:
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
    except (RuntimeError, OSError) as e:
        raise MediaError(f"cannot read video {path}: {last_line(e)}",
                         "use a video file ffmpeg can decode (mp4, mov, webm, …)") from None
    return int(frames)


def header(path: Path) -> dict:
    """ffmpeg's description of a video (`size`, `fps`, `duration`, …), read before any frame is decoded; a
    file ffmpeg cannot read is MediaError."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        reader.close()
    except (RuntimeError, OSError, StopIteration) as e:
        raise MediaError(f"cannot read the video {path}: {last_line(e)}",
                         "use a video file ffmpeg can decode (mp4, mov, webm, …)") from None
    return meta


def last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__
