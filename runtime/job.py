"""One render job: the orchestration every render path runs (local, sharded across Ray workers, watch, batch).

    plan the job -> decide the start, resume or keep -> run the frame loop -> write the outputs

`run_job` is that sequence, once. What differs between the paths is only where the frames come from: a
`FrameSource` (the local loop on this process's model, `frame_loop.LocalFrames`; the workers of a pool,
`dfm.scaleout.shard`). Everything else -- the refusal before any model loads, the rule for continuing a
checkpoint, restarting past a damaged one, keeping the frames an edit cannot change, readying the folder
without losing a file dfm did not write, the report, the manifest and the record for the next incremental
render -- happens here, so a new per-frame input or output is added once and every path gets it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract.controlnet import saved_control_folders
from ..contract.files import file_mode
from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from . import controlnet, incremental, networks, resume, speedups
from .checks import check_table, mode_warnings
from .depth import DepthEstimator
from .errors import RenderError
from .finishing import finished_names
from .models import StableDiffusion, family_warnings
from .outdir import (
    Output,
    check_names_are_dfms,
    clear_old_frames,
    clear_temp_files,
    dfm_manifest,
    open_output,
    owned_frames,
    record_files,
    remove_if_empty,
    unwritable,
)
from .output import write_json, write_text_atomic
from .prompts import prompt_warnings
from .record import keep_hashes, write_job_status
from .timing import StageTimer


@dataclass
class RenderReport:
    out_dir: Path
    frames: int
    video: Path | None
    timings: dict[str, float]
    unet_calls: int
    text_encoder_calls: int
    device: str = ""
    # UNet batch items (each AND part and each unconditional pass of an evaluation is one): the table's
    # Σ unet_evals, PLMS's warm-up and the second-order samplers' second evaluations included
    unet_evals: int = 0
    dtype: str = ""
    warnings: list[str] = field(default_factory=list)
    depth_calls: int = 0  # depth model runs (3D)
    depth_maps: int = 0  # depth/NNNNN.png written
    resumed_at: int = 0  # the first frame this run rendered (> 0: continued from a checkpoint, or frames kept)
    kept_frames: int = 0  # frames of the previous render in the folder this run kept (incremental re-render)
    kept: str = ""  # what it kept and why: "frames 0–59 kept: the first change is the prompt at frame 60"
    finished: tuple[Path, ...] = ()  # the upscaled / interpolated videos beside video.mp4 (runtime/finishing.py)


class RenderInterrupted(KeyboardInterrupt):
    """Ctrl-C during a render, raised once every finished frame and its checkpoint are on disk: the same
    render resumes at `next_frame`."""

    def __init__(self, next_frame: int, total: int) -> None:
        super().__init__(f"interrupted at frame {next_frame} of {total}")
        self.next_frame = next_frame
        self.total = total


class RenderCancelled(RenderInterrupted):
    """The caller's `cancel()` said stop (watch mode, when the scene changed): raised at the next frame
    boundary once the frames so far and their checkpoint are on disk, like RenderInterrupted."""


# ---- the start: resume, keep or render everything ---------------------------------------------------------


@dataclass
class Start:
    """Where a render begins: which rows it renders, from what state, and what it keeps."""

    fingerprint: dict[str, str]
    checkpoint: resume.Checkpoint | None  # the same render, interrupted: continued from its state
    warnings: list[str]
    todo: np.ndarray  # one bool per row: this run renders it; the others are on disk and stay
    latents: Callable[[int], object] | None = None  # 2D/3D incremental: what the replay to `frame` decodes
    kept: str = ""  # what an incremental render keeps and why
    keep_video: bool = False  # nothing changes the video: the previous one stays

    @property
    def frame(self) -> int:
        """The first frame this run renders (the row count when it renders none)."""
        hits = np.flatnonzero(self.todo)
        return int(hits[0]) if len(hits) else len(self.todo)

    @property
    def kept_frames(self) -> int:
        return int((~self.todo).sum())

    @property
    def replays(self) -> bool:
        """The state at `frame` is rebuilt by replaying the frames before it (2D/3D incremental)."""
        return self.checkpoint is None and self.latents is not None and 0 < self.frame < len(self.todo)


def decide_start(table: FrameTable, fingerprint: dict[str, str], out: Output, restart: bool) -> Start:
    """Where a render of `table` into `out` begins; reads the folder, changes nothing (a checkpoint that is
    not continued is removed by `prepare_output`, once the models are loaded).

    The same render, interrupted, continues from its checkpoint (and, in modes whose rows are independent,
    keeps the frames its record lists after it). A checkpoint of this very render that counts on a damaged
    frame is not continued: the render starts over. Otherwise, where the folder holds the frames of another
    table (the record of an earlier render), the frames the edit cannot change are kept (`incremental.plan`).
    `restart` renders everything."""
    n = len(table)
    everything = np.ones(n, dtype=bool)
    if restart:
        return Start(fingerprint, None, [], everything)
    found, why = resume.load(out.root, fingerprint, n, out.resumable, rebuild=lambda k: fresh_state_at(table, k))
    record = resume.read_record(out.root)
    if found is not None:
        todo = np.arange(n) >= found.next_frame
        if mode_of(table.settings.mode).rows_independent and record is not None and record.fingerprint == fingerprint:
            # frames an incremental render of this table kept, after the ones it has rendered
            kept, _ = incremental.whole_frames(record.valid & todo, out.resumable, stop_at_first=False)
            todo &= ~kept
        return Start(fingerprint, found, [why] if why else [], todo)
    if why and resume.checkpoint_info(out.root)[0] == fingerprint:
        # this very render's checkpoint, refused because a frame it counts on is damaged: start over (the
        # record would keep the frames before the damaged one)
        return Start(fingerprint, None, [why], everything)
    plan = incremental.plan(table, fingerprint, record, out.root, out.resumable, dfm_manifest(out.root) is not None)
    if plan is None:
        return Start(fingerprint, None, [why] if why else [], everything)
    # a checkpoint of the earlier table is not continued: say so only when nothing is kept either
    warnings = [why] if why and plan.todo.all() else []
    return Start(fingerprint, None, warnings, plan.todo, plan.latents, plan.message, plan.keep_video)


def fresh_state_at(table: FrameTable, k: int) -> resume.Checkpoint | None:
    """The state before frame k where it can be built without the frames before it: in the modes whose rows
    are independent, when every row from k on is diffused and blends no diffusion before k (nothing is
    handed on, so the empty state is the state). None elsewhere."""
    if not mode_of(table.settings.mode).rows_independent:
        return None
    cols = table.columns
    for i in range(k, len(table)):
        if not bool(cols["diffused"][i]):
            return None
        blended = [int(cols["tween_to"][i])] + ([int(cols["tween_from"][i])] if float(cols["tween"][i]) < 1.0 else [])
        if any(0 <= j < k for j in blended):
            return None
    return resume.Checkpoint(next_frame=k, at=k - 1, buffers={}, color_ref=None)


# ---- the folder -------------------------------------------------------------------------------------------


def prepare_output(table: FrameTable, out: Output, start: Start) -> int:
    """Ready the output folder once the models are loaded, just before the first frame is written: the frames
    dfm may write recorded first (so a kill from here on leaves a folder dfm knows as its own), then the
    record of which frames on disk are this table's (those kept), then the previous render's manifest, a
    checkpoint not continued, dfm's temporary files, its frames, depth maps and latents this render does not
    keep, and the video unless it stays, removed; table.csv written. Files dfm did not write stay. Returns
    the file mode a new video.mp4 gets (that of the one it replaces)."""
    root = out.root
    kept = ~start.todo
    n = len(table)

    def keeps(i: int) -> bool:
        return i < n and bool(kept[i])

    try:
        owned = owned_frames(root)
        resume.write_owner(root, max(owned, n))
        resume.write_record(root, table, start.fingerprint, kept)
        previous = dfm_manifest(root) or {}
        for key in ("finished", "control_frames"):  # they stay dfm's until this render replaces them
            listed = previous.get(key)
            if isinstance(listed, list):
                record_files(root, [n for n in listed if isinstance(n, str) and "/" not in n])
        record_files(root, saved_control_folders(table.settings))  # before this render writes into them
        if previous:
            (root / "manifest.json").unlink()  # it describes frames about to be replaced
        if start.checkpoint is None:
            resume.state_path(root).unlink(missing_ok=True)  # never continue, nor later mix in, another state
        clear_temp_files(out)
        out.frames.mkdir(exist_ok=True)
        clear_old_frames(out.frames, keeps, owned)
        clear_old_frames(out.depth, keeps, owned)
        keep_hashes(root, keeps)  # the digests of the frames that stay; the others are logged as written
        # the latents of the diffusions before the first frame rendered are this table's; later ones are not
        first, latents_kept = start.frame, mode_of(table.settings.mode).keeps_latents
        resume.remove_latents(root, lambda i: latents_kept and i < first, owned)
        video_mode = file_mode(out.video)
        if not start.keep_video:  # (it stays when neither its frames nor its settings change)
            out.video.unlink(missing_ok=True)  # a stale video would not match the new frames
        write_text_atomic(root / "table.csv", table.to_csv())
    except OSError as e:
        raise unwritable(root, e) from None
    return video_mode


def writes_video(table: FrameTable) -> bool:
    """Whether a render of `table` encodes video.mp4 (stills make none)."""
    s = table.settings
    return bool(s.save_video) and mode_of(s.mode).animated


# ---- models -----------------------------------------------------------------------------------------------


def unet_batches(table: FrameTable) -> tuple[int, ...]:
    """The UNet batch sizes this table uses (CFG doubles it), for the compile warm-up. Composite prompts
    (`AND`) batch more; their first frame compiles that size."""
    guided = np.asarray(table["cfg_scale"], dtype=float) > 1.0
    return tuple(sorted({2 if g else 1 for g in guided.tolist()}))


def load_models(sd: StableDiffusion, depth: DepthEstimator | None, timer: StageTimer, table: FrameTable,
                options: speedups.Speedups | None) -> None:
    """The load stage of every render: the depth model, the SD weights, the LoRAs and embeddings (a file
    that does not fit fails here), the ControlNet units' models, then the speed-up switches (torch.compile's
    warm-up timed as "compile")."""
    from .prompts import flow_refusals

    flow_refusals(table, sd)  # from the configs alone: what Flux/SD3 cannot render yet, before any weight loads
    if "unet" not in sd.__dict__:  # before anything loads: the offloaded parts stay on the CPU (a loaded model,
        sd.offload = speedups.resolve_offload(  # reused by watch mode, keeps how it was loaded)
            options, sd, lambda: controlnet.unit_weight_files(table, sd.allow_pickle))
    with timer("load"):
        if depth is not None:
            depth.load()
        sd.load()
        networks.prepare(table, sd, sd.allow_pickle)
        controlnet.load_units(table, sd)
        batches = unet_batches(table)
    speedups.apply(sd, options, size=(table.settings.width, table.settings.height), batches=batches, timer=timer)


def job_warnings(table: FrameTable, sd: StableDiffusion) -> list[str]:
    """What a render of `table` on `sd` tells the user before its frames: prompts the model reads otherwise
    than written, settings the mode does not use, the model family's notes."""
    return prompt_warnings(table, sd) + mode_warnings(table.settings) + family_warnings(table, sd)


# ---- the frames and the run -------------------------------------------------------------------------------


@dataclass
class FramesDone:
    """What a frame source did: the counts and times a report gives."""

    written: int  # frames this run wrote
    video: Path | None
    timings: dict[str, float]
    unet_calls: int = 0
    unet_evals: int = 0
    text_encoder_calls: int = 0
    device: str = ""
    dtype: str = ""
    depth_calls: int = 0
    depth_maps: int = 0  # written by this run
    warnings: list[str] = field(default_factory=list)


class FrameSource(Protocol):
    """Where the frames of a job come from: renders the rows `start.todo` asks for into `out` (frames/,
    and video.mp4 unless `start.keep_video`), saving the state a resume needs as it goes; Ctrl-C raises
    RenderInterrupted once what is done is on disk."""

    def load(self, start: Start) -> None:
        """Load what the frames need (called only when some row is rendered)."""

    def warnings(self) -> list[str]:
        """`job_warnings` of the model that renders."""

    def run(self, start: Start, video_mode: int) -> FramesDone:
        """Render the rows; `video_mode` is the file mode a new video.mp4 gets."""


def run_job(table: FrameTable, out: Output, frames: FrameSource, *, fingerprint: Callable[[], dict[str, str]],
            manifest: Callable[[RenderReport, float], dict], restart: bool = False,
            on_resume: Callable[[int, int], None] | None = None,
            on_keep: Callable[[str], None] | None = None, allow_pickle: bool = False) -> RenderReport:
    """Render `table` into `out` with `frames`: the one orchestration of every render path.

    Nothing in the folder changes until the models are loaded: a render that fails before its first frame
    leaves the folder as it found it (a folder it made is removed again). `fingerprint()` is what a checkpoint
    must match (resume.fingerprint); `manifest(report, started)` the manifest.json written at the end. A
    checkpoint of the same render is continued (`on_resume(frame, total)` is told) unless `restart`; a render
    of another table there keeps the frames the difference cannot change (`on_keep(message)` is told what
    and why, before the first frame)."""
    check_table(table)
    made = open_output(out.root)
    try:
        check_names_are_dfms(out.root, dfm_names(table.settings))
    except RenderError:
        if made:
            remove_if_empty(out.root)
        raise
    try:
        start = decide_start(table, fingerprint(), out, restart)
        started = time.time()
        if start.checkpoint is not None and on_resume is not None:
            on_resume(start.frame, len(table))
        if start.kept and on_keep is not None:
            on_keep(start.kept)
        if start.todo.any():  # with nothing to render, nothing needs the models
            frames.load(start)
    except BaseException:
        if made:
            remove_if_empty(out.root)
        raise
    warnings = start.warnings + frames.warnings()
    video_mode = prepare_output(table, out, start)
    status = job_status(table, start, started)
    say_status(out, status)
    try:
        done = frames.run(start, video_mode)
    except BaseException:
        say_status(out, {**status, "stopped": time.time()})
        raise
    report = RenderReport(
        out_dir=out.root,
        frames=start.kept_frames + done.written,
        video=done.video,
        timings=done.timings,
        unet_calls=done.unet_calls,
        unet_evals=done.unet_evals,
        text_encoder_calls=done.text_encoder_calls,
        device=done.device,
        dtype=done.dtype,
        warnings=warnings + done.warnings,
        depth_calls=done.depth_calls,
        depth_maps=(start.kept_frames if out.save_maps else 0) + done.depth_maps,
        resumed_at=start.frame,
        kept_frames=start.kept_frames if start.checkpoint is None else 0,
        kept=start.kept,
    )
    written = manifest(report, started)
    finish_output(table, out, start, written)
    say_status(out, {**status, "finished": time.time()})
    if writes_finished(table, report):
        from .finishing import finish_video

        report.finished = tuple(finish_video(table, out.root, allow_pickle=allow_pickle,
                                             device=report.device or "auto"))
        try:  # the manifest lists them: they are dfm's files of this render
            write_json(out.root / "manifest.json", {**written, "finished": [p.name for p in report.finished]})
        except OSError as e:
            raise unwritable(out.root, e) from None
    return report


def dfm_names(settings) -> dict[str, str]:
    """What a render of these settings writes in its folder beside the frames, video and state: the finished
    videos and the folders of saved control images (name -> what writes it)."""
    return {**finished_names(settings),
            **{name: "save_control_frames" for name in saved_control_folders(settings)}}


def job_status(table: FrameTable, start: Start, started: float) -> dict:
    """What this render does, for a live view of the folder (record.write_job_status)."""
    return {"total": len(table), "todo": int(start.todo.sum()), "kept": start.kept or None,
            "resumed_at": start.frame if start.checkpoint is not None else None, "started": started,
            "pid": os.getpid()}


def say_status(out: Output, status: dict) -> None:
    """Write the job status; a folder that refuses it refuses the frames too, and says so there."""
    try:
        write_job_status(out.root, status)
    except OSError:
        pass


def writes_finished(table: FrameTable, report: RenderReport) -> bool:
    """Whether the scene asks for an upscaled or interpolated video, and there is a video.mp4 to start from."""
    s = table.settings
    return bool(s.upscale_model or s.interpolate != "none") and report.video is not None


def finish_output(table: FrameTable, out: Output, start: Start, manifest: dict) -> None:
    """The last writes of a finished render: manifest.json, the record (every frame is this table's), and the
    checkpoint removed (nothing is left to resume; the record and the latents stay for the next edit)."""
    try:
        write_json(out.root / "manifest.json", manifest)
        resume.write_record(out.root, table, start.fingerprint, np.ones(len(table), dtype=bool))
    except OSError as e:
        raise unwritable(out.root, e) from None
    resume.remove(out.root)


__all__ = ["FrameSource", "FramesDone", "RenderCancelled", "RenderInterrupted", "RenderReport", "Start",
           "decide_start", "fresh_state_at", "job_warnings", "load_models", "prepare_output", "run_job",
           "unet_batches", "writes_video"]
