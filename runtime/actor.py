"""A render worker: loaded models kept between renders, and tasks handed to it as FrameTables.

`dfm batch` and `dfm render --ray` run one `RenderWorker` in their own process, or one per GPU (or per
CPU slot) as a Ray actor (`scaleout/cluster.py`). The worker knows nothing of Ray and never parses: a task
is a compiled FrameTable plus where its output goes, so what a worker renders is exactly what
`render()` renders from the same table.

* `render_scene` renders a whole scene with `run_render`, the model loaded once and reused for every
  scene of the same model (a different model replaces it: one model per worker, so a GPU never holds
  two). Output, resume and incremental behaviour are `run_render`'s own.
* `render_rows` renders some rows of a scene whose frames do not depend on each other (stills,
  interpolation, video input) and returns them as PNG bytes, for a driver that assembles the scene
  (`scaleout/shard.py`). Its frames are the bytes `run_render` writes for those rows.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from . import resume, speedups
from .checks import check_table, needs_depth
from .depth import DepthEstimator
from .device import Placement, pick_device
from .errors import RenderError
from .frame import FrameRenderer
from .frame_loop import row_view, video_input
from .job import RenderReport, job_warnings, load_models, unet_batches
from .models import StableDiffusion
from .output import HostCopy, encode_png, to_uint8
from .render import manifest, resolve_depth, resolve_model, run_render
from .timing import StageTimer


@dataclass(frozen=True)
class SceneTask:
    """One scene to render: its table (compiled on the driver) and where its output goes."""

    key: str  # the job's name in a batch, e.g. "robot/seed=3"
    table: FrameTable
    out_dir: str
    scene_text: str = ""  # for the manifest
    scene_path: str = ""  # the scene file: relative model paths are tried against its folder
    model: str | None = None  # --model: overrides the scene's model
    depth_model: str | None = None
    restart: bool = False
    # the speed-up switches (runtime/speedups.py; None: the defaults), applied after the model loads as
    # run_render applies them, so a worker's frames and fingerprint are a local render's
    speed: speedups.Speedups | None = None


@dataclass
class SceneOutcome:
    """What became of a task: a report, or the error a user can act on (`internal`: a bug)."""

    key: str
    worker: str
    report: RenderReport | None = None
    error: str = ""
    help: str = ""
    internal: bool = False
    detail: str = ""  # the traceback of an internal error
    loaded_model: bool = False  # this render loaded the SD model (False: it reused the worker's)
    up_to_date: bool = False  # the folder already held this render: every frame was kept, none rendered
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.report is not None


@dataclass(frozen=True)
class ShardSetup:
    """What a worker found when it opened a scene for row rendering (with the model loaded)."""

    worker: str
    fingerprint: dict[str, str] = field(default_factory=dict)  # resume's: the driver's checkpoints carry it
    device: str = ""
    dtype: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""  # a RenderError's message and help (returned: an exception would lose its help on the way)
    help: str = ""


@dataclass
class RowsResult:
    """Rendered rows as PNG files (the bytes run_render writes), and what rendering them cost."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    # with save_control_frames: each ControlNet unit's control image as PNG, (unit number, frame, bytes)
    controls: list[tuple[int, int, bytes]] = field(default_factory=list)
    unet_calls: int = 0
    unet_evals: int = 0  # UNet batch items, as RenderReport counts them
    text_encoder_calls: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    loaded_model: bool = False
    fingerprint: dict[str, str] = field(default_factory=dict)  # in the first result of each worker
    error: str = ""
    help: str = ""
    internal: bool = False


def row_dependency(table: FrameTable) -> str | None:
    """Why the frames of `table` cannot be rendered apart from one another, or None when each row is a
    render of its own (then any subset of rows renders, on any worker, to the frames a whole render
    writes for them)."""
    mode = table.settings.mode
    if not mode_of(mode).rows_independent:
        return (f"in mode {mode} every frame starts from the previous one, moved by the camera, so frame i "
                "cannot be rendered before frame i - 1")
    cols = table.columns
    for i in range(len(table)):
        blended = [int(cols["tween_to"][i])]
        if int(cols["tween_from"][i]) >= 0 and float(cols["tween"][i]) < 1.0:
            blended.append(int(cols["tween_from"][i]))
        if not bool(cols["diffused"][i]) or any(k not in (i, -1) for k in blended):
            return f"frame {i} blends the diffusions of other frames (cadence), so it depends on them"
    return None


def _fingerprint(task: SceneTask, sd: StableDiffusion) -> dict[str, str]:
    """run_render's resume fingerprint of `task` on `sd`: its speed-up switches as they resolve on this
    device and size (recorded on `sd` first: a worker's model may have rendered under other switches), and
    the LoRA and embedding file stamps, so an edited LoRA renders again rather than resuming or keeping."""
    s = task.table.settings
    speedups.record(sd, speedups.describe(task.speed, sd.placement.device.type, (s.width, s.height)))
    return resume.fingerprint(task.table, sd, None)


def _model_key(sd: StableDiffusion) -> tuple:
    src = sd.source
    return (src.kind, src.spec, str(src.path or ""), str(sd.folder or ""), sd.sha256, sd.allow_pickle)


def _depth_key(depth: DepthEstimator) -> tuple:
    return (depth.spec, str(depth.folder), depth.midas_weight, depth.allow_pickle)


class _Rows:
    """A scene opened for row rendering on this worker: one FrameRenderer kept across calls, so the
    prompt embeddings are computed once per worker and video mode's input streams forward."""

    def __init__(self, table: FrameTable, sd: StableDiffusion, timer: StageTimer) -> None:
        self.renderer = FrameRenderer(table, sd, timer, video=video_input(table, sd.placement.device))
        self.timer = timer
        self.table = table
        self.row = row_view(table)  # the columns the renderer reads at each row, as the local loop hands them
        self.controls: list[tuple[int, int, bytes]] = []  # the control images saved since the last call
        if table.settings.save_control_frames:  # written by the driver, which has the render folder
            for unit in self.renderer.control_units:
                unit.images.sink = lambda i, png, n=unit.images.unit.number: self.controls.append((n, i, png))

    def close(self) -> None:
        if self.renderer.video is not None:
            self.renderer.video.close()
        for unit in self.renderer.control_units:
            unit.images.close()  # a ControlNet unit's video reader


class RenderWorker:
    """Renders tasks with models it keeps loaded between them. `on_progress(key, resumed_at, done,
    total)` is told of every frame when the worker runs in the driver's own process; a Ray driver asks
    `progress()` instead."""

    def __init__(
        self,
        device: str = "auto",
        *,
        dtype: str = "auto",
        allow_pickle: bool = False,
        threads: int | None = None,
        name: str = "local",
        on_progress: Callable[[str, int, int, int], None] | None = None,
    ) -> None:
        self.name = name
        self.device = device
        self.dtype = dtype  # the models' precision (runtime/device.py): part of the worker's placement
        self.allow_pickle = allow_pickle
        self.on_progress = on_progress
        if threads:
            torch.set_num_threads(int(threads))  # a CPU worker uses the cores it was given, no more
        self.model_loads = 0  # SD models this worker loaded
        self._placement: Placement | None = None
        self._sd: tuple[tuple, StableDiffusion] | None = None
        self._sd_loaded = False  # its weights are loaded (a render that keeps every frame loads nothing)
        self._depth: tuple[tuple, DepthEstimator] | None = None
        self._progress: dict[str, tuple[int, int, int]] = {}
        self._rows: dict[str, _Rows] = {}

    # -- models --

    def placement(self) -> Placement:
        if self._placement is None:
            self._placement = pick_device(self.device, self.dtype)
        return self._placement

    def _model(self, task: SceneTask) -> tuple[StableDiffusion, bool]:
        """The SD model of `task`: the worker's own when it is the same model, else a new one (not yet
        loaded) that replaces it. True when it is new."""
        found = resolve_model(task.table.settings, self.placement(), override=task.model,
                              scene_path=task.scene_path, allow_pickle=self.allow_pickle)
        key = _model_key(found)
        if self._sd is not None and self._sd[0] == key:
            return self._sd[1], False
        self._drop_models()
        self._sd = (key, found)
        self._sd_loaded = False
        return found, True

    def _note_loaded(self, report: RenderReport) -> bool:
        """Whether the render of `report` loaded the worker's model (a render that keeps every frame
        loads none); counted in `model_loads`."""
        if self._sd_loaded or report.kept_frames == report.frames:
            return False
        self._sd_loaded = True
        self.model_loads += 1
        return True

    def _depth_model(self, task: SceneTask) -> DepthEstimator | None:
        found = resolve_depth(task.table.settings, self.placement(), override=task.depth_model,
                              scene_path=task.scene_path, allow_pickle=self.allow_pickle)
        if found is None:
            return None
        key = _depth_key(found)
        if self._depth is None or self._depth[0] != key:
            self._depth = (key, found)
        return self._depth[1]

    def _drop_models(self) -> None:
        """Free the models before another one loads (a GPU holds one model at a time)."""
        if self._sd is None:
            return
        for rows in self._rows.values():
            rows.close()
        self._sd, self._rows = None, {}
        gc.collect()
        if self._placement is not None and self._placement.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- whole scenes --

    def progress(self) -> dict[str, tuple[int, int, int]]:
        """(resumed_at, frames done, frames) of each scene rendering now."""
        return dict(self._progress)

    def _report(self, key: str, resumed_at: int, done: int, total: int) -> None:
        self._progress[key] = (resumed_at, done, total)
        if self.on_progress is not None:
            self.on_progress(key, resumed_at, done, total)

    def render_scene(self, task: SceneTask) -> SceneOutcome:
        """Render one scene into `task.out_dir` exactly as `render()` does (resuming a checkpoint of the
        same render there unless `task.restart`). A RenderError or a bug is returned, not raised, so a
        batch goes on with its other scenes; Ctrl-C (RenderInterrupted) is raised."""
        start = time.perf_counter()
        out = SceneOutcome(task.key, self.name)
        resumed = [0]

        def on_resume(frame: int, total: int) -> None:
            resumed[0] = frame
            self._report(task.key, frame, frame, total)

        def progress(done: int, total: int) -> None:
            self._report(task.key, resumed[0], done, total)

        try:
            table = task.table
            check_table(table)  # before anything loads, as render() does
            placement = self.placement()
            timer = StageTimer(placement.device)
            with timer("load"):
                depth = self._depth_model(task)
                sd, _ = self._model(task)
            out.report = report = run_render(
                table, sd, Path(task.out_dir), scene_text=task.scene_text, scene_path=task.scene_path,
                progress=progress, timer=timer, depth=depth, restart=task.restart, on_resume=on_resume,
                speed=task.speed)
            out.up_to_date = report.kept_frames == report.frames
            out.loaded_model = self._note_loaded(report)
        except RenderError as e:
            out.error, out.help = e.message, e.help
        except Exception as e:  # noqa: BLE001 - one scene's bug must not stop the batch; reported as one
            out.error, out.internal, out.detail = f"{type(e).__name__}: {e}", True, traceback.format_exc()
        finally:
            self._progress.pop(task.key, None)
            out.seconds = time.perf_counter() - start
        return out

    # -- rows of a scene whose frames are independent --

    def open_rows(self, task: SceneTask) -> ShardSetup:
        """Check `task`'s table, find its model (loaded by the first `render_rows`: a render that keeps
        every frame loads none) and say what a driver needs before it renders rows: the resume
        fingerprint, the device and the warnings `render()` would give (or the RenderError)."""
        table = task.table
        try:
            check_table(table)
            why = row_dependency(table)
            if why is not None or needs_depth(table.settings):
                raise RenderError(f"the frames of this scene cannot be rendered apart: {why or 'it uses depth'}",
                                  "render it without --ray; `dfm batch --ray` renders many scenes in parallel")
            sd, _ = self._model(task)  # resolved, not loaded: a render that keeps every frame needs no model
            placement = self.placement()
            warnings = job_warnings(table, sd)
        except RenderError as e:
            return ShardSetup(self.name, error=e.message, help=e.help)
        return ShardSetup(
            self.name,
            fingerprint=_fingerprint(task, sd),
            device=str(placement.device),
            dtype=str(placement.dtype).replace("torch.", ""),
            warnings=warnings,
        )

    def ping(self) -> str:
        """The worker's name, once it is up (a driver gives tasks only to workers that answered)."""
        return self.name

    def render_rows(self, task: SceneTask, rows: Sequence[int]) -> RowsResult:
        """Render `rows` of `task` (rows of a table `row_dependency` accepts) and return their PNG bytes.
        Errors come back in the result, as from render_scene."""
        out = RowsResult()
        try:
            table = task.table
            opened = self._rows.get(task.key)
            if opened is None:
                check_table(table)
                if row_dependency(table) is not None:
                    raise RenderError("the frames of this scene depend on each other", "render it without --ray")
                timer = StageTimer(self.placement().device)
                with timer("load"):
                    sd, _ = self._model(task)
                # the load stage of every render: the weights, the LoRAs and embeddings, the speed-up switches
                load_models(sd, None, timer, table, task.speed)
                if not self._sd_loaded:
                    self._sd_loaded, out.loaded_model = True, True
                    self.model_loads += 1
                opened = self._rows[task.key] = _Rows(table, sd, timer)
                out.fingerprint = _fingerprint(task, sd)
            renderer, timer = opened.renderer, opened.timer
            sd = renderer.sd
            # the worker's model may have rendered another task under other switches since: apply this task's
            # again (nothing happens when they are the ones in force), so the fingerprint stays true
            speedups.apply(sd, task.speed, size=(table.settings.width, table.settings.height),
                           batches=unet_batches(table), timer=timer)
            before = dict(timer.seconds)
            unet, text, evals = sd.unet_calls, sd.text_encoder_calls, renderer.unet_evals
            # each frame goes to the host without waiting (HostCopy) and is PNG-encoded on a thread while
            # the next one renders, as run_render's writer thread does
            with torch.inference_mode(), ThreadPoolExecutor(1, thread_name_prefix="dfm-rows-png") as pngs:
                encoded = []
                for i in rows:
                    frame = renderer.frame(int(i), opened.row(int(i)))
                    with timer("write"):
                        host = HostCopy(to_uint8(frame))
                        png = pngs.submit(lambda h=host: encode_png(np.ascontiguousarray(h.numpy())))
                        encoded.append((int(i), png))
                with timer("write_wait"):
                    out.frames = [(i, png.result()) for i, png in encoded]
            out.controls, opened.controls = opened.controls, []
            out.unet_calls = sd.unet_calls - unet
            out.unet_evals = renderer.unet_evals - evals
            out.text_encoder_calls = sd.text_encoder_calls - text
            out.timings = {k: round(v - before.get(k, 0.0), 6) for k, v in timer.seconds.items()
                           if v - before.get(k, 0.0) > 0}
        except RenderError as e:
            out.frames, out.error, out.help = [], e.message, e.help
        except Exception as e:  # noqa: BLE001 - returned to the driver, which reports it as a bug
            out.frames, out.error, out.internal = [], f"{type(e).__name__}: {e}\n{traceback.format_exc()}", True
        return out

    def rows_manifest(self, task: SceneTask, report: RenderReport, started: float) -> dict:
        """The manifest.json of an assembled scene, as run_render writes it, from the driver's report."""
        sd, _ = self._model(task)
        _fingerprint(task, sd)  # the switches of this task (the model may have rendered another since)
        return manifest(task.table, sd, report, task.scene_text, task.scene_path, started, None)

    def close_rows(self, key: str) -> None:
        opened = self._rows.pop(key, None)
        if opened is not None:
            opened.close()


__all__ = ["RenderWorker", "RowsResult", "SceneOutcome", "SceneTask", "ShardSetup",
           "row_dependency"]
