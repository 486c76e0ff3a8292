"""Writing a render: frames as PNG (atomically, on a background thread), video.mp4, table.csv, manifest.json.

The render loop hands each finished frame to `FrameWriter.put` and goes on with the next one; the copy
to the host, the PNG encoding and the H.264 encoding happen on the writer thread. The queue is bounded,
so a slow disk slows the render down instead of filling memory.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from .errors import RenderError


def frame_name(index: int) -> str:
    return f"{index:05d}.png"


def to_uint8(frame: Tensor) -> Tensor:
    """(1, 3, H, W) float [0, 1] -> (H, W, 3) uint8, rounded, still on the device."""
    return (frame[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file in the same folder, then rename: a killed render never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


class _HostCopy:
    """A frame on its way to the CPU: on CUDA an async copy into pinned memory plus an event, so the
    render thread never waits for the transfer."""

    def __init__(self, frame_u8: Tensor) -> None:
        if frame_u8.device.type == "cuda":
            self._host = torch.empty(frame_u8.shape, dtype=torch.uint8, pin_memory=True)
            self._host.copy_(frame_u8, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = frame_u8.to("cpu")
            self._event = None

    def numpy(self) -> np.ndarray:
        if self._event is not None:
            self._event.synchronize()
        return self._host.numpy()


class VideoEncoder:
    """H.264 yuv420p mp4 through imageio-ffmpeg's bundled ffmpeg, written to a temp name and renamed."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int) -> None:
        import imageio_ffmpeg

        self.path = path
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
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._gen.close()
        except Exception:  # noqa: BLE001 - ffmpeg may already be gone; cleaning up is best effort
            pass
        self._tmp.unlink(missing_ok=True)


class FrameWriter:
    """Background writer of frames (and the video stream) with a bounded queue."""

    def __init__(
        self,
        frames_dir: Path,
        video: VideoEncoder | None = None,
        *,
        depth: int = 8,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self.frames_dir = frames_dir
        self.video = video
        self.written = 0
        self.seconds = 0.0  # time the writer thread spent (host copy wait, PNG, video)
        self.wait_seconds = 0.0  # time the render thread was blocked on a full queue
        self._on_written = on_written
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dfm-frame-writer", daemon=True)
        self._thread.start()

    def put(self, index: int, frame: Tensor) -> None:
        """Queue frame `index` ((1, 3, H, W) float [0, 1] on any device); frames must come in order."""
        self._raise_if_failed()
        item = (index, _HostCopy(to_uint8(frame)))
        start = time.perf_counter()
        self._queue.put(item)
        self.wait_seconds += time.perf_counter() - start

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure so put() never blocks forever
            index, host = item
            try:
                start = time.perf_counter()
                rgb = host.numpy()
                write_atomic(self.frames_dir / frame_name(index), encode_png(rgb))
                if self.video is not None:
                    self.video.add(rgb)
                self.seconds += time.perf_counter() - start
                self.written += 1
                if self._on_written is not None:
                    self._on_written(index)
            except BaseException as e:  # noqa: BLE001 - re-raised on the render thread
                self._error = e

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            e = self._error
            if isinstance(e, OSError):
                raise RenderError(
                    f"could not write frames to {self.frames_dir}: {e}",
                    "check free disk space and write permission",
                ) from e
            raise e

    def close(self) -> Path | None:
        """Wait for every queued frame; finish the video. Returns the video path (or None)."""
        self._queue.put(None)
        self._thread.join()
        try:
            self._raise_if_failed()
        except BaseException:
            if self.video is not None:
                self.video.abort()
            raise
        if self.video is not None:
            start = time.perf_counter()
            path = self.video.close()
            self.seconds += time.perf_counter() - start
            return path
        return None

    def abort(self) -> None:
        """Stop after an error elsewhere: drop the video, keep the frames written so far."""
        self._error = self._error or RuntimeError("render aborted")
        self._queue.put(None)
        self._thread.join()
        if self.video is not None:
            self.video.abort()


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in (
        "dfm",
        "torch",
        "diffusers",
        "transformers",
        "numpy",
        "safetensors",
        "opencv-python-headless",
        "imageio-ffmpeg",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
