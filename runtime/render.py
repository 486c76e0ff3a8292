"""A render: one FrameTable in, frames/, video.mp4, table.csv and manifest.json out.

`render()` resolves the scene's models and calls `run_render()`, which runs the one render job
(`job.run_job`: check, start/resume/keep, the frames, the outputs) with this process's model as the frame
source (`frame_loop.LocalFrames`). The sharded render (`dfm.scaleout.shard`), the Ray and batch worker
(`actor.py`) and watch mode run the same job; what one frame does is `frame.FrameRenderer`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Callable
from pathlib import Path

from ..contract.controlnet import saved_control_folders
from ..contract.table import FrameTable, Settings
from . import controlnet, resume, speedups
from .checks import check_table, needs_depth
from .depth import DepthEstimator, depth_map_scale
from .device import Placement, pick_device
from .errors import RenderError
from .fingerprint import package_versions
from .frame_loop import LocalFrames
from .job import RenderCancelled, RenderInterrupted, RenderReport, run_job
from .model_source import model_request, resolve_source
from .models import StableDiffusion
from .outdir import Output
from .timing import StageTimer


def run_render(
    table: FrameTable,
    sd: StableDiffusion,
    out_dir: Path,
    *,
    scene_text: str = "",
    scene_path: str = "",
    progress: Callable[[int, int], None] | None = None,
    timer: StageTimer | None = None,
    depth: DepthEstimator | None = None,
    restart: bool = False,
    on_resume: Callable[[int, int], None] | None = None,
    on_keep: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    speed: speedups.Speedups | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RenderReport:
    """Render `table` with an already resolved model (render() resolves it; benchmarks and tests pass
    their own, and their own timer).

    `depth` is the depth model, required where the mode uses one (3D with use_depth_warping or
    save_depth_maps) and ignored elsewhere. A checkpoint in `out_dir` of the same render is continued
    (`on_resume(frame, total)` is told) unless `restart`; a render of another table there keeps the
    frames the difference cannot change (`on_keep(message)` is told what and why, before the first
    frame). Ctrl-C raises RenderInterrupted once the frames so far are safely written; `cancel()`
    returning true stops the same way at the next frame, raising RenderCancelled. `speed` holds the
    speed-up switches (runtime/speedups.py; None: the defaults). `on_stage(words)` is told what the render
    does before its first frame (loading the model: from where, on which device, in which precision)."""
    s = table.settings
    depth = _depth_in_use(s, depth)
    timer = timer or StageTimer(sd.placement.device)
    out = Output(Path(out_dir), save_maps=depth is not None and bool(s.save_depth_maps))

    def fingerprint() -> dict[str, str]:
        # the switches change the frames' bytes: the resume fingerprint compares them (applied at load)
        speedups.record(sd, speedups.describe(speed, sd.placement.device.type, (s.width, s.height)))
        return resume.fingerprint(table, sd, depth)

    frames = LocalFrames(table, sd, out, timer, depth=depth, speed=speed, progress=progress, cancel=cancel,
                         on_stage=on_stage)
    return run_job(table, out, frames, fingerprint=fingerprint, restart=restart, on_resume=on_resume,
                   on_keep=on_keep, allow_pickle=sd.allow_pickle,
                   manifest=lambda report, started: manifest(table, sd, report, scene_text, scene_path, started, depth))


def resolve_depth(settings: Settings, placement: Placement, *, override: str | None, scene_path: str,
                  allow_pickle: bool) -> DepthEstimator | None:
    """The depth model a render of these settings uses, its folder resolved now (a missing model fails
    before the SD model loads); None where the mode uses none. `override` replaces the scene's
    depth_model; the scene's own relative paths are tried against the scene's folder first."""
    if not needs_depth(settings):
        return None
    spec = override or settings.depth_model
    if not spec:
        raise RenderError(
            "this render needs a depth model (3D depth warping or depth maps, a ControlNet unit with the depth "
            "preprocessor, or a hybrid depth mask)",
            'set depth_model "Intel/dpt-hybrid-midas" (or a local folder), or use_depth_warping off',
        )
    base_dirs = (Path(scene_path).resolve().parent,) if scene_path and override is None else ()
    est = DepthEstimator(
        spec,
        placement,
        midas_weight=float(settings.midas_weight),
        base_dirs=base_dirs,
        allow_pickle=allow_pickle,
    )
    _ = est.folder
    return est


def resolve_model(settings: Settings, placement: Placement, *, override: str | None, scene_path: str,
                  allow_pickle: bool) -> StableDiffusion:
    """The SD model of a render, found (not loaded): `override` replaces the scene's model, and the
    scene's sha256 then no longer applies; the scene's own relative paths are tried against its folder."""
    asked = model_request(settings.model, settings.model_sha256, override=override, scene_path=scene_path)
    return StableDiffusion(resolve_source(asked.spec, asked.base_dirs), placement, allow_pickle=allow_pickle,
                           sha256=asked.sha256)


def manifest(
    table: FrameTable,
    sd: StableDiffusion,
    report: RenderReport,
    scene_text: str,
    scene_path: str,
    started: float,
    depth: DepthEstimator | None = None,
) -> dict:
    s = table.settings
    src = sd.source
    out = {
        "dfm_manifest": 1,
        "scene": {
            "path": scene_path,
            "sha256": hashlib.sha256(scene_text.encode("utf-8")).hexdigest(),
            "text": scene_text,
        },
        "table": {
            "format_version": table.format_version,
            "rows": len(table),
            "file": "table.csv",
            "sha256": hashlib.sha256(table.to_csv().encode("utf-8")).hexdigest(),
        },
        "model": {
            "spec": src.spec,
            "kind": src.kind,
            "path": str(sd.folder or src.path or ""),
            "sha256": sd.sha256,
        },
        "mode": s.mode,
        "size": [s.width, s.height],
        "fps": s.fps,
        "sampler": s.sampler,
        "device": report.device,
        "dtype": report.dtype,
        "frames": report.frames,
        "video": report.video.name if report.video else None,
        "unet_calls": report.unet_calls,
        "unet_evals": report.unet_evals,
        "text_encoder_calls": report.text_encoder_calls,
        # the speed-up switches the frames were made under, as the resume fingerprint compares them
        "speedups": speedups.recorded(sd) or speedups.describe(None, sd.placement.device.type, (s.width, s.height)),
        # the parts kept in CPU memory and moved to the GPU a block at a time (`--offload`): [] when none
        "offloaded": list(sd.offloaded_parts),
        "depth_calls": report.depth_calls,
        "depth_maps": report.depth_maps,
        "resumed_at": report.resumed_at,
        "kept_frames": report.kept_frames,
        "kept": report.kept,
        "timings": report.timings,
        "warnings": report.warnings,
        "versions": package_versions(),
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    units = controlnet.describe_units(table, sd)
    if units:  # what each ControlNet unit used (a scene without units has no such key)
        out["controlnet"] = units
        saved = saved_control_folders(s)
        if saved:  # dfm's folders of control images: a later render may replace them
            out["control_frames"] = saved
    if depth is not None:
        out["depth_model"] = {"spec": depth.spec, "path": str(depth.folder), "kind": depth.kind}
        if report.depth_maps:
            out["depth_map_scale"] = depth_map_scale(depth.kind)
    return out


def render(
    table: FrameTable,
    out_dir: Path,
    *,
    scene_text: str = "",
    scene_path: str = "",
    model: str | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    progress: Callable[[int, int], None] | None = None,
    depth_model: str | None = None,
    restart: bool = False,
    on_resume: Callable[[int, int], None] | None = None,
    on_keep: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    models: dict | None = None,
    dtype: str = "auto",
    speed: speedups.Speedups | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RenderReport:
    """Render a compiled scene into `out_dir` (frames/, video.mp4, table.csv, manifest.json; depth/ with
    save_depth_maps).

    `model` overrides the scene's model (the scene's sha256 then no longer applies), `depth_model` the
    scene's depth model. Errors the user can fix raise RenderError.

    A render killed at any point continues to the same bytes: a checkpoint of the same render in
    `out_dir/.dfm-state` is resumed (`on_resume(frame, total)` is told) unless `restart`; Ctrl-C
    raises RenderInterrupted (a KeyboardInterrupt) saying where the next run starts. A render of an
    edited scene into the folder of an earlier one keeps every frame the edit cannot change and renders
    from the first one it can (`on_keep(message)` says which and why), to the bytes of a full render.
    `cancel()` true stops at the next frame (RenderCancelled). `models`, a dict the caller keeps between
    renders (watch mode), holds the loaded models so that the next render of the same model reuses them.
    `dtype` (auto, fp16, bf16, fp32) and `speed` (runtime/speedups.py) are the speed-up switches of
    `dfm render`; each that changes the frames' arithmetic is part of the resume fingerprint."""
    check_table(table)
    s = table.settings
    placement = pick_device(device, dtype, bf16_first=wants_bf16(str(model or s.model or ""), scene_path))
    timer = StageTimer(placement.device)
    depth = resolve_depth(s, placement, override=depth_model, scene_path=scene_path, allow_pickle=allow_pickle)
    with timer("load"):
        sd = resolve_model(s, placement, override=model, scene_path=scene_path, allow_pickle=allow_pickle)
    if models is not None:  # the same model resolved the same way: the one already loaded
        sd = models.setdefault(("sd", sd.source, str(placement.device), str(placement.dtype), sd.sha256,
                                allow_pickle), sd)
        if depth is not None:
            depth = models.setdefault(("depth", depth.spec, str(depth.folder), str(placement.device),
                                       float(s.midas_weight)), depth)
    return run_render(
        table,
        sd,
        Path(out_dir),
        scene_text=scene_text,
        scene_path=scene_path,
        progress=progress,
        timer=timer,
        depth=depth,
        restart=restart,
        on_resume=on_resume,
        on_keep=on_keep,
        cancel=cancel,
        speed=speed,
        on_stage=on_stage,
    )


__all__ = ["RenderCancelled", "RenderInterrupted", "RenderReport", "manifest", "render", "resolve_depth",
           "resolve_model", "run_render"]


def wants_bf16(model: str, scene_path: str) -> bool:
    """Whether the render's model is of a family trained in bf16 (Flux, SD3: `--dtype auto` gives bf16 on a
    GPU that has it), told from its configs or name without loading it."""
    from ..contract import families
    from ..contract.errors import UserError

    base = Path(scene_path).parent if scene_path and scene_path not in ("<string>", "<stdin>") else None
    try:
        return bool(model) and families.source_family(model, base).base in families.FLOW_BASES
    except UserError:
        return False


def _depth_in_use(settings: Settings, depth: DepthEstimator | None) -> DepthEstimator | None:
    """The depth model of a render: `depth` where the mode uses one (then it must be given), else None."""
    if not needs_depth(settings):
        return None
    if depth is None:
        raise RenderError(
            "this render needs a depth model (3D depth warping or depth maps, a ControlNet depth unit, or a hybrid "
            "depth mask)",
            "pass run_render a DepthEstimator (render() resolves the scene's depth_model)",
        )
    return depth

