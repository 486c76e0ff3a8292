"""video.mp4: H.264 through imageio-ffmpeg's bundled ffmpeg (numpy frames in, no torch).

Kept apart from runtime/output.py (the render's writer thread, which moves tensors and so imports torch)
so that `dfm preview` can write its video without importing torch. (output.py still carries a copy of
this class; it is meant to import it from here.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..files import file_mode


class VideoEncoder:
    """H.264 yuv420p mp4 through imageio-ffmpeg's bundled ffmpeg, written to a temp name and renamed."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int, mode: int | None = None) -> None:
        import imageio_ffmpeg

        self.path = path
        self._mode = file_mode(path) if mode is None else mode  # an old video's mode, else the umask's
        self._tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self._gen = imageio_ffmpeg.write_frames(
            str(self._tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=2,
            ffmpeg_log_level="error",
            # bitexact + no metadata: the same frames give the same file
            output_params=[
                "-crf",
                str(int(crf)),
                "-preset",
                "veryfast",
                "-map_metadata",
                "-1",
                "-fflags",
                "+bitexact",
                "-flags:v",
                "+bitexact",
                "-movflags",
                "+faststart",
            ],
        )
        self._gen.send(None)

    def add(self, rgb: np.ndarray) -> None:
        self._gen.send(np.ascontiguousarray(rgb))

    def close(self) -> Path:
        self._gen.close()
        os.chmod(self._tmp, self._mode)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._gen.close()
        except Exception:  # noqa: BLE001 - ffmpeg may already be gone; cleaning up is best effort
            pass
        self._tmp.unlink(missing_ok=True)
