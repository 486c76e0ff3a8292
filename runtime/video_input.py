"""The frame source of video mode: the input video's frames, selected, resized and streamed.

Source frames `extract_from_frame`, then every `extract_nth_frame`-th one, up to `extract_to_frame`
(inclusive; -1 = the last) become output rows 0, 1, 2, … Frames are decoded by imageio-ffmpeg one at a
time as the render asks for them; only the current one is held, so a long video costs no memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from ..contract import media
from ..contract.media import Selection, select
from ..contract.table import Settings
from .errors import RenderError


def count_frames(path: Path) -> int:
    """The number of frames in `path`, or a RenderError saying why it cannot be read."""
    try:
        return media.count_frames(path)
    except media.MediaError as e:
        raise RenderError(e.message, e.help) from None


def video_selection(settings: Settings, rows: int) -> Selection:
    """Check the scene's input video before any model loads, and return the frames it uses.

    The table must not have more rows than the selection has frames (dfm refuses rather than rendering a
    shorter video; Deforum takes the frame count from the video instead)."""
    raw = settings.video_init_path
    if not raw:
        raise RenderError("video mode needs an input video", 'set video_init_path "clip.mp4" in the scene')
    path = Path(str(raw)).expanduser()
    if not path.is_file():
        raise RenderError(f"input video {path} does not exist", "check video_init_path")
    nth, start, to = int(settings.extract_nth_frame), int(settings.extract_from_frame), int(settings.extract_to_frame)
    if to >= 0 and to < start:
        raise RenderError(
            f"extract_to_frame {to} is before extract_from_frame {start}", "set extract_to_frame -1 for the end"
        )
    total = count_frames(path)
    if total < 1:
        raise RenderError(f"input video {path} has no video frames", "check video_init_path")
    sel = select(total, start, nth, to)
    if sel.count < rows:
        raise RenderError(
            f"input video {path.name} gives {sel.count} frames (of {total}: from {start}, every {nth}"
            + (f", to {to}" if to >= 0 else "")
            + f") but the scene has {rows}",
            f"set frames to at most {sel.count}, or use a smaller extract_nth_frame or a longer video",
        )
    return sel


def to_frame(rgb: np.ndarray, width: int, height: int, device: torch.device) -> Tensor:
    """(h, w, 3) uint8 RGB -> (1, 3, height, width) float32 [0, 1] on `device`. INTER_AREA to shrink (no
    aliasing), Lanczos to enlarge (what Deforum's PIL LANCZOS resize does)."""
    h, w = rgb.shape[:2]
    if (w, h) != (width, height):
        shrink = width * height < w * h
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    if not rgb.flags.writeable:  # a view of ffmpeg's bytes; torch wants memory it may own
        rgb = rgb.copy()
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


class VideoFrames:
    """Rows of video mode -> input frames, decoded on demand in increasing row order."""

    def __init__(self, path: Path, selection: Selection, width: int, height: int, device: torch.device) -> None:
        self.path = Path(path)
        self.selection = selection
        self.width, self.height = width, height
        self.device = device
        self._reader: Iterator[bytes] | None = None
        self._size: tuple[int, int] = (0, 0)
        self._next_source = 0  # index of the source frame the reader yields next

    def _open(self) -> None:
        import imageio_ffmpeg

        self.close()
        self._reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        meta = next(self._reader)
        self._size = tuple(meta["size"])
        self._next_source = 0

    def frame(self, row: int) -> Tensor:
        """The input frame of `row`, resized to the scene size, on the device."""
        if row < 0 or row >= self.selection.count:
            raise IndexError(f"row {row} has no input frame ({self.selection.count} selected)")
        want = self.selection.source_index(row)
        if self._reader is None or want < self._next_source:
            self._open()  # rows only go forward in a render; a backward jump (a resume) reopens
        assert self._reader is not None
        raw = None
        while self._next_source <= want:
            try:
                raw = next(self._reader)
            except StopIteration:
                raise RenderError(
                    f"input video {self.path.name} ended at frame {self._next_source}, before frame {want}",
                    "the video is shorter than ffmpeg reported; re-encode it",
                ) from None
            self._next_source += 1
        w, h = self._size
        rgb = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
        return to_frame(rgb, self.width, self.height, self.device)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()  # stops ffmpeg
            self._reader = None


__all__ = ["Selection", "VideoFrames", "count_frames", "select", "to_frame", "video_selection"]
