"""The local frame source of a render job: this process's model renders the rows in order.

`LocalFrames` runs the frame loop (`FrameRenderer` per row) and hands each frame to the background
writers: the PNG (feeding the video encoder), the depth map, and behind every frame the checkpoint of the
state after it (`resume.py`), so a killed render continues where it stopped; and the latents of every
diffusion, so a render of an edited scene keeps the frames the edit cannot change. Each frame sees only
the columns it reads (`row_view`: the contract's rule, shared with the Ray worker).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..contract import changes, hybrid
from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from . import resume, speedups
from .depth import DepthEstimator, depth_image
from .encoder import Soundtrack, VideoEncoder
from .frame import FrameRenderer, RenderState
from .job import FramesDone, RenderCancelled, RenderInterrupted, Start, job_warnings, load_models, writes_video
from .models import StableDiffusion
from .outdir import Output
from .output import FrameWriter, HostCopies, HostCopy
from .timing import StageTimer
from .video_input import VideoFrames, video_selection


def row_view(table: FrameTable) -> Callable[[int], dict[str, object]]:
    """Row i of `table` with the columns the renderer reads there and no others (`changes.RowReads`), so the
    rule of what an edit changes cannot miss a read."""
    reads = changes.RowReads(table)

    def row(i: int) -> dict[str, object]:
        full = table.row(i)
        return {k: full[k] for k in reads.at(i)}

    return row


def video_input(table: FrameTable, device: torch.device) -> VideoFrames | None:
    """The input frames of a mode that reads a video, or of a 2D/3D scene's hybrid video (opened at the first
    frame; nothing is decoded before). A hybrid "video" that is the init image (hybrid_use_init_image) opens
    nothing."""
    s = table.settings
    mode = mode_of(s.mode)
    hybrid_video = mode.camera and hybrid.uses_video(s) and not s.hybrid_use_init_image
    if not (mode.reads_video or hybrid_video):
        return None
    path = Path(str(s.video_init_path)).expanduser()  # as video_selection reads it
    return VideoFrames(path, video_selection(s, len(table)), s.width, s.height, device)


class Checkpointer:
    """Queues a checkpoint behind every written frame: the writer thread saves the state after frame i
    once frame i's PNG (and depth map) is on disk, so a checkpoint never counts on a missing file."""

    def __init__(self, out_dir: Path, fingerprint: dict[str, str], writer: FrameWriter,
                 depth_writer: FrameWriter | None, total: int, start: int) -> None:
        self.out_dir = out_dir
        self.fingerprint = fingerprint
        self.writer = writer
        self.depth_writer = depth_writer
        self.total = total
        self.saved_next_frame = start  # where a resume would start now (set on the writer thread)
        self.copies = HostCopies()  # a tensor unchanged since the last checkpoint is not copied again

    def snapshot(self, state: RenderState) -> resume.Snapshot | None:
        """The checkpoint of `state` (its tensors' host copies started), None after the last frame."""
        if state.next_frame >= self.total:
            return None  # the last frame: success removes the checkpoint anyway
        return resume.Snapshot(state, self.fingerprint, self.copies)

    def after(self, state: RenderState, latents: tuple[int, Tensor] | None = None,
              snap: resume.Snapshot | None = None) -> None:
        if latents is not None:  # kept for a later incremental render, saved before the checkpoint
            index, host = latents[0], HostCopy(latents[1])
            self.writer.put_task(lambda: resume.save_latents(self.out_dir, index, host.tensor()))
        snap = snap or self.snapshot(state)
        if snap is None:
            return
        depth_items = self.depth_writer.queued if self.depth_writer is not None else 0
        self.writer.put_task(lambda: self._save(snap, depth_items))

    def _save(self, snap: resume.Snapshot, depth_items: int) -> None:
        if self.depth_writer is not None and not self.depth_writer.wait_done(depth_items):
            return  # a depth map this checkpoint counts on was not written: keep the older one
        snap.save(self.out_dir)
        self.saved_next_frame = snap.next_frame


class Writers:
    """The background writers of a render: frames (feeding the video), depth maps, and the checkpoint
    queued behind each frame."""

    def __init__(self, table: FrameTable, out: Output, start: Start, video_mode: int,
                 depth_kind: str = "midas") -> None:
        s = table.settings
        self.depth_kind = depth_kind  # the depth model's kind sets the depth maps' scale
        video = None
        if not start.keep_video and writes_video(table):  # (prepare_output removed the old one)
            video = VideoEncoder(out.video, s.width, s.height, float(s.fps), int(s.video_crf), video_mode,
                                 soundtrack=Soundtrack.of(s.audio, s.audio_offset, len(table), s.fps))
        self.kept_video = out.video if start.keep_video and out.video.is_file() else None
        self.frames = FrameWriter(out.frames, video, digests=out.root)
        self.frames.replay_video(start.frame)  # the stream cannot be appended to: it restarts from the PNGs
        self.depth: FrameWriter | None = None
        if out.save_maps:
            out.depth.mkdir(exist_ok=True)
            self.depth = FrameWriter(out.depth)
        self.checkpoints = Checkpointer(out.root, start.fingerprint, self.frames, self.depth, len(table),
                                        start.frame)

    @property
    def on_depth(self) -> Callable[[int, Tensor], None] | None:
        depth, kind = self.depth, self.depth_kind
        return (lambda i, d: depth.put_depth(i, depth_image(d, kind))) if depth is not None else None

    def put(self, i: int, frame: Tensor, state: RenderState, latents: tuple[int, Tensor] | None = None) -> None:
        # the checkpoint's copies first: the frame is usually the newest diffusion, so its copy is reused
        snap = self.checkpoints.snapshot(state)
        self.frames.put(i, frame, snap.copy_of(frame) if snap is not None else None)
        self.checkpoints.after(state, latents, snap)

    def keep(self, i: int) -> None:
        """Frame i stays as it is on disk (incremental render of an independent mode): the video reads it."""
        self.frames.replay_video(i + 1, start=i)

    def flush(self) -> None:
        """After an exception: write what is queued (depth first: the checkpoints wait on it)."""
        for w in (self.depth, self.frames):
            if w is not None:
                w.flush()

    def close(self, timer: StageTimer) -> Path | None:
        """Wait for every frame, finish the video (returned, or None) and add the writers' times."""
        frames, depth = self.frames, self.depth
        with timer("write_wait"):
            video = frames.close() or self.kept_video
            if depth is not None:
                depth.close()
        timer.add("write", frames.seconds + (depth.seconds if depth else 0.0))
        timer.add("write_queue_wait", frames.wait_seconds + (depth.wait_seconds if depth else 0.0))
        return video



@dataclass(frozen=True)
class _Calls:
    """The model call counters at one moment (a report counts this render's calls only)."""

    unet: int
    text_encoder: int
    depth: int

    @classmethod
    def of(cls, sd: StableDiffusion, depth: DepthEstimator | None) -> _Calls:
        return cls(sd.unet_calls, sd.text_encoder_calls, depth.calls if depth is not None else 0)



class LocalFrames:
    """The frames of a job rendered here, on `sd` (and `depth` where the mode uses one), in row order."""

    def __init__(self, table: FrameTable, sd: StableDiffusion, out: Output, timer: StageTimer, *,
                 depth: DepthEstimator | None = None, speed: speedups.Speedups | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None,
                 on_stage: Callable[[str], None] | None = None) -> None:
        self.table, self.sd, self.out, self.timer = table, sd, out, timer
        self.depth, self.speed = depth, speed
        self.progress, self.cancel, self.on_stage = progress, cancel, on_stage

    def load(self, start: Start) -> None:
        if self.on_stage is not None:
            self.on_stage(loading_words(self.sd, self.depth))
        load_models(self.sd, self.depth, self.timer, self.table, self.speed)

    def warnings(self) -> list[str]:
        return job_warnings(self.table, self.sd)

    def run(self, start: Start, video_mode: int) -> FramesDone:
        sd, depth = self.sd, self.depth
        writers = Writers(self.table, self.out, start, video_mode, depth.kind if depth is not None else "midas")
        # `save_control_frames`: each unit's control images beside the frames (controlnet_N/00000.png)
        control_dir = self.out.root if self.table.settings.save_control_frames else None
        renderer = FrameRenderer(self.table, sd, self.timer, depth=depth,
                                 video=video_input(self.table, sd.placement.device), on_depth=writers.on_depth,
                                 control_dir=control_dir)
        if start.checkpoint is not None:
            restore(renderer, start.checkpoint)
        before = _Calls.of(sd, depth)
        try:
            frame_loop(renderer, self.table, start, writers, self.progress, self.cancel, self.timer)
        finally:
            for unit in renderer.control_units:
                unit.images.close()  # a video source's reader
        video = writers.close(self.timer)
        encoder = writers.frames.video
        after = _Calls.of(sd, depth)
        return FramesDone(
            written=writers.frames.written,
            video=video,
            timings=self.timer.report(),
            unet_calls=after.unet - before.unet,
            unet_evals=renderer.unet_evals,
            text_encoder_calls=after.text_encoder - before.text_encoder,
            device=str(sd.placement.device),
            dtype=str(sd.placement.dtype).replace("torch.", ""),
            depth_calls=after.depth - before.depth,
            depth_maps=writers.depth.written if writers.depth else 0,
            warnings=([encoder.warning] if encoder is not None and encoder.warning else [])
            + [w for unit in renderer.control_units for w in unit.images.warnings()],
        )


def loading_words(sd: StableDiffusion, depth: DepthEstimator | None) -> str:
    """What the load stage is about to do, for a person: which model from where, on which device and in which
    precision (and the depth model)."""
    src, placement = sd.source, sd.placement
    where = f" from {src.path}" if src.path is not None and str(src.path) != src.spec else ""
    words = f"loading the {src.describe()}{where} on {placement.device}, {str(placement.dtype).replace('torch.', '')}"
    return words + (f", with depth model {depth.spec}" if depth is not None else "")


def restore(renderer: FrameRenderer, checkpoint: resume.Checkpoint) -> None:
    """The renderer's state set to a loaded checkpoint's, its tensors moved to the render's device."""
    device = renderer.device
    renderer.state = RenderState(
        next_frame=checkpoint.next_frame,
        at=checkpoint.at,
        buffers={k: v.to(device) for k, v in checkpoint.buffers.items()},
        color_ref=checkpoint.color_ref.to(device) if checkpoint.color_ref is not None else None,
    )


def frame_loop(renderer: FrameRenderer, table: FrameTable, start: Start, writers: Writers,
               progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None,
               timer: StageTimer) -> None:
    """Render the rows `start` asks for, in order, each frame queued with the checkpoint behind it (a
    kept frame is only read into the video); first, for an incremental render in 2D/3D, replay the
    frames before the first one. On any exception the queued frames are good and their checkpoints save
    work, so they are written (a writer that failed drops its queue instead) and the checkpoint stays for
    the next run; Ctrl-C becomes RenderInterrupted, `cancel()` turning true RenderCancelled (both at a frame
    boundary)."""
    n = len(table)
    row = row_view(table)
    first = start.frame
    try:
        with torch.inference_mode():
            if start.replays:
                with timer("replay"):
                    renderer.replay(row, first, start.latents)
            for i in range(first, n):
                if not start.todo[i]:
                    writers.keep(i)
                else:
                    if cancel is not None and cancel():
                        raise RenderCancelled(writers.checkpoints.saved_next_frame, n)
                    frame = renderer.frame(i, row(i))
                    latents, renderer.new_latents = renderer.new_latents, None
                    writers.put(i, frame, renderer.state, latents)
                if progress is not None:
                    progress(i + 1, n)
    except BaseException as exc:
        writers.flush()
        if isinstance(exc, KeyboardInterrupt):
            kind = RenderCancelled if isinstance(exc, RenderCancelled) else RenderInterrupted
            raise kind(writers.checkpoints.saved_next_frame, n) from exc
        raise
    finally:
        if renderer.video is not None:
            renderer.video.close()


__all__ = ["Checkpointer", "LocalFrames", "Writers", "frame_loop", "loading_words", "restore", "row_view",
           "video_input"]
