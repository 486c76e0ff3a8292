"""Writing a render: frames as PNG (atomically, on a background thread), video.mp4, table.csv, manifest.json.

The render loop hands each finished frame to `FrameWriter.put` and goes on with the next one; the copy
to the host, the PNG encoding and the H.264 encoding happen on the writer thread. The queue is bounded,
so a slow disk slows the render down instead of filling memory.

Host copies are made once per tensor (`HostCopies`): the frame written is usually the newest diffusion,
which the checkpoint behind it saves as well, so one asynchronous copy serves both (the writer thread
then rounds it to uint8, the same arithmetic as on the device); the colour reference, the same tensor all
through a render, goes to the host once.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from ..contract.files import write_atomic
from .encoder import VideoEncoder  # noqa: F401 - re-exported: the video stream, shared with the preview
from .errors import RenderError
from .record import append_hashes, frame_digest, frame_name, png_complete  # noqa: F401 - re-exported


def to_uint8(frame: Tensor) -> Tensor:
    """(1, 3, H, W) float [0, 1] -> (H, W, 3) uint8, rounded, still on the device."""
    return (frame[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB, or (H, W) grey (uint8 or uint16), as PNG bytes."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


class HostCopy:
    """A tensor on its way to the CPU: on CUDA an async copy into pinned memory plus an event, so the
    render thread never waits for the transfer. On the CPU it keeps a reference: the render loop never
    modifies a tensor in place, so the reference stays the value it was."""

    def __init__(self, tensor: Tensor) -> None:
        if tensor.device.type == "cuda":
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = tensor.to("cpu")
            self._event = None

    def tensor(self) -> Tensor:
        if self._event is not None:
            self._event.synchronize()
        return self._host

    def numpy(self) -> np.ndarray:
        return self.tensor().numpy()


def tensor_version(tensor: Tensor) -> int:
    """The in-place change counter of `tensor`; -1 for an inference-mode tensor, which has none (the
    render loop runs in inference mode and never changes a tensor in place: identity is enough there)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


class HostCopies:
    """Host copies by tensor identity: asking again for a tensor already copied (the same object, not
    changed in place since: `tensor_version`) returns the copy made, so a tensor that lives through
    several frames crosses to the host once. `retain` drops the copies of tensors no longer in use."""

    def __init__(self) -> None:
        self._entries: list[tuple[weakref.ref, int, HostCopy]] = []

    def get(self, tensor: Tensor) -> HostCopy:
        host = self.find(tensor)
        if host is not None:
            return host
        host = HostCopy(tensor)
        self._entries.append((weakref.ref(tensor), tensor_version(tensor), host))
        return host

    def find(self, tensor: Tensor) -> HostCopy | None:
        """The copy of `tensor` if one was made (and it is unchanged), else None."""
        for ref, version, host in self._entries:
            if ref() is tensor and version == tensor_version(tensor):
                return host
        return None

    def retain(self, tensors: Iterable[Tensor]) -> None:
        keep = {id(t) for t in tensors}
        self._entries = [e for e in self._entries if (t := e[0]()) is not None and id(t) in keep]

    def __len__(self) -> int:
        return len(self._entries)


class _Rounded:
    """A float frame's host copy, rounded to the PNG's uint8 pixels when the writer thread reads it."""

    def __init__(self, host: HostCopy) -> None:
        self._host = host

    def numpy(self) -> np.ndarray:
        return to_uint8(self._host.tensor()).numpy()


def read_png(path: Path) -> np.ndarray:
    """A frame PNG back as (H, W, 3) uint8 RGB: the exact bytes `encode_png` was given."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RenderError(f"cannot read frame {path}", "render again with --restart")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameWriter:
    """Background writer of frames (and the video stream) with a bounded queue.

    Besides frames, the queue takes tasks (`put_task`): functions run on the writer thread once every
    item queued before them is written, which is how a checkpoint follows the PNG it counts on."""

    def __init__(
        self,
        frames_dir: Path,
        video: VideoEncoder | None = None,
        *,
        depth: int = 8,
        on_written: Callable[[int], None] | None = None,
        digests: Path | None = None,
    ) -> None:
        self.frames_dir = frames_dir
        self.digests = digests  # the render folder whose digest log records each frame written (frames only)
        self.video = video
        self.written = 0
        self.seconds = 0.0  # time the writer thread spent (host copy wait, PNG, video, tasks)
        self.wait_seconds = 0.0  # time the render thread was blocked on a full queue
        self._on_written = on_written
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._queued = 0  # items put so far (render thread)
        self._done = 0  # items finished or dropped so far (writer thread)
        self._stopped = False
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dfm-frame-writer", daemon=True)
        self._thread.start()

    def put(self, index: int, frame: Tensor, host: HostCopy | None = None) -> None:
        """Queue frame `index` ((1, 3, H, W) float [0, 1] on any device); frames must come in order. `host`
        is a host copy of `frame` already made (for the checkpoint): the writer thread rounds it to uint8
        instead of the device rounding it and copying again."""
        if host is not None:
            self._enqueue((index, _Rounded(host)))
        else:
            self._enqueue((index, HostCopy(to_uint8(frame))))

    def put_depth(self, index: int, values: Tensor) -> None:
        """Queue depth map `index`: (H, W) integers in 0..65535 (depth_image), written as 16-bit grey."""
        self._enqueue((index, HostCopy(values)))

    def put_task(self, task: Callable[[], None]) -> None:
        """Run `task` on the writer thread after everything queued so far (an error in it fails the
        writer like a failed frame)."""
        self._enqueue(task)

    def replay_video(self, count: int, start: int = 0) -> None:
        """Feed frames start..count-1 from their PNGs into the video (a resumed render's stream starts with
        the frames an earlier run wrote, and an incremental one reads the frames it keeps; PNG is lossless,
        so the video gets the same uint8 frames)."""
        if self.video is None or count <= start:
            return
        video = self.video
        self.put_task(lambda: [video.add(read_png(self.frames_dir / frame_name(i))) for i in range(start, count)])

    @property
    def queued(self) -> int:
        """How many items were queued; `wait_done(queued)` waits for all of them."""
        return self._queued

    def wait_done(self, count: int) -> bool:
        """Block until the first `count` queued items are finished; False if the writer failed or stopped
        first (their files may then be missing)."""
        with self._progress:
            self._progress.wait_for(lambda: self._done >= count or self._stopped)
            return self._done >= count and self._error is None

    def _enqueue(self, item) -> None:
        self._raise_if_failed()
        start = time.perf_counter()
        self._queue.put(item)
        self._queued += 1
        self.wait_seconds += time.perf_counter() - start

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                if self._error is None:  # after a failure, drain so put() never blocks forever
                    self._process(item)
                with self._progress:
                    self._done += 1
                    self._progress.notify_all()
        finally:
            with self._progress:
                self._stopped = True
                self._progress.notify_all()

    def _process(self, item) -> None:
        try:
            start = time.perf_counter()
            if callable(item):
                item()
                self.seconds += time.perf_counter() - start
                return
            index, host = item
            rgb = host.numpy()
            if rgb.dtype != np.uint8:  # a depth map's int32 values
                rgb = rgb.astype(np.uint16)
            png = encode_png(rgb)
            write_atomic(self.frames_dir / frame_name(index), png)
            if self.digests is not None:  # after the file is whole: a logged digest is of a frame on disk
                append_hashes(self.digests, [(index, frame_digest(png))])
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

    def _join(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def close(self) -> Path | None:
        """Wait for every queued frame; finish the video. Returns the video path (or None)."""
        self._join()
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

    def flush(self) -> None:
        """Stop after an interruption: write every queued frame and task (the checkpoints that follow
        them included), drop the unfinished video. Writer errors are not raised: the caller is already
        handling an exception."""
        self._join()
        if self.video is not None:
            self.video.abort()

    def abort(self) -> None:
        """Stop after an error elsewhere: drop the queue and the video, keep the frames written so far."""
        self._error = self._error or RuntimeError("render aborted")
        self._join()
        if self.video is not None:
            self.video.abort()


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
