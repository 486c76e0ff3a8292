"""video.mp4: H.264 through imageio-ffmpeg's bundled ffmpeg (numpy frames in, no torch).

Kept apart from runtime/output.py (the render's writer thread, which moves tensors and so imports torch)
so that `dfm preview` can write its video without importing torch; output.py imports it from here.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.files import file_mode


@dataclass(frozen=True)
class Soundtrack:
    """The audio a video carries: the scene's `audio` file from `offset` seconds, cut to `duration`."""

    path: str
    offset: float
    duration: float

    @classmethod
    def of(cls, audio: str | None, offset: float, frames: int, fps: float) -> Soundtrack | None:
        """The soundtrack of a render from its table's settings `audio` and `audio_offset` (the caller reads
        them, and lists them in SETTINGS_READ), or None when the scene has no audio."""
        if not audio:
            return None
        return cls(str(audio), float(offset or 0.0), frames / float(fps))


class AudioMuxError(RuntimeError):
    """ffmpeg could not add the soundtrack; the video without it is kept."""


def mux_audio(video: Path, track: Soundtrack, out: Path) -> Path:
    """`video` with `track` added as AAC, the video stream copied (never re-encoded), into `out`. The runtime
    only copies the audio stream: it never decodes it for features (the compiler did that)."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", str(video),
           "-ss", f"{track.offset:.6f}", "-t", f"{track.duration:.6f}", "-i", track.path,
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "192k",
           "-t", f"{track.duration:.6f}", "-map_metadata", "-1", "-fflags", "+bitexact", "-movflags", "+faststart",
           "-f", "mp4", str(out)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioMuxError(f"could not add the soundtrack {track.path}: {why[-1] if why else proc.returncode}")
    return out


def temp_paths(path: Path) -> tuple[Path, Path]:
    """The temporary files of a VideoEncoder writing `path`: the stream, and the stream with its soundtrack
    (a render cleans up those a killed one left)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}"), path.with_name(f".{path.stem}.audio.tmp{path.suffix}")


class VideoEncoder:
    """H.264 yuv420p mp4 through imageio-ffmpeg's bundled ffmpeg, written to a temp name and renamed.
    With a `soundtrack`, close() adds it in one more ffmpeg pass (video copied, audio to AAC)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int, mode: int | None = None,
                 soundtrack: Soundtrack | None = None) -> None:
        import imageio_ffmpeg

        self.path = path
        self.soundtrack = soundtrack
        self.warning = ""  # set by close() when the soundtrack could not be added
        self._mode = file_mode(path) if mode is None else mode  # an old video's mode, else the umask's
        self._tmp, self._muxed = temp_paths(path)
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
        if self.soundtrack is not None:
            try:
                mux_audio(self._tmp, self.soundtrack, self._muxed)
                os.replace(self._muxed, self._tmp)
            except AudioMuxError as e:  # every frame is written: keep the silent video, say why
                self.warning = f"{e}; video.mp4 has no sound"
        os.chmod(self._tmp, self._mode)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the unfinished file, quietly: a render stopped before its first frame is
        not an invalid video for the user to read about (imageio-ffmpeg logs one)."""
        ffmpeg_log = logging.getLogger("imageio_ffmpeg")
        level = ffmpeg_log.level
        ffmpeg_log.setLevel(logging.ERROR)
        try:
            self._gen.close()
        except Exception:  # noqa: BLE001 - ffmpeg may already be gone; cleaning up is best effort
            pass
        finally:
            ffmpeg_log.setLevel(level)
        self._tmp.unlink(missing_ok=True)
