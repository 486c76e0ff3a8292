"""What a render checks before any model loads: the table keeps the contract, and this runtime can render it.

A table without a setting or column the runtime reads is refused here (the runtime has no defaults of its
own), as is a value it cannot render; the render then never fails on them after minutes of loading.
"""

from __future__ import annotations

from pathlib import Path

from ..contract import hybrid
from ..contract.controlnet import UNIT_SCHEDULES, active_units, column
from ..contract.modes import MODES
from ..contract.modes import mode as mode_of
from ..contract.reads import Read
from ..contract.table import DERIVED, FrameTable, MissingSetting, Settings, TableError
from . import camera, effects, networks, samplers
from .errors import RenderError
from .flow import RAFT_URL, raft_weights_path
from .frame import INIT_EFFECTS, SAMPLER_COLUMNS
from .prompts import COLUMNS as PROMPT_COLUMNS
from .video_input import video_selection
from .warp import BORDERS, PADDING_MODES, SAMPLING_MODES

SUPPORTED_MODES = tuple(MODES)

# Every setting the runtime reads (the compiler resolves them all; model_sha256 is the compiler's own): a
# table without one is refused before anything loads, never rendered with a default of the runtime's.
SETTINGS_READ = (
    "mode", "size", "fps", "model", "model_sha256", "sampler", "init_image", "border", "perspective_flip",
    "color_coherence", "color_force_grayscale", "use_depth_warping", "depth_model", "midas_weight",
    "padding_mode", "sampling_mode", "save_depth_maps", "video_init_path", "extract_nth_frame",
    "extract_from_frame", "extract_to_frame", "video_mask_path", "save_video", "video_crf", "audio", "audio_offset",
    "seed_resize_from", "lora", "embedding", "annotator_dir", "save_control_frames",
    "hybrid_composite", "hybrid_motion", "hybrid_motion_use_prev_img", "hybrid_flow_method", "hybrid_flow_consistency",
    "hybrid_consistency_blur", "hybrid_comp_mask_type", "hybrid_comp_mask_inverse", "hybrid_comp_mask_equalize",
    "hybrid_comp_mask_auto_contrast", "hybrid_use_first_frame_as_init_image", "hybrid_use_init_image",
    "optical_flow_cadence", "optical_flow_redo_generation", "interpolate", "interpolate_times", "interpolate_slow_mo",
    "interpolate_weights", "interpolate_upscaled", "upscale_model", "upscale_scale",
)
# The columns the frame loop reads by name, declared by the code that reads them: in every mode the derived
# columns the renderer reads (contract/table.py DERIVED; `lora_weights` only with a LoRA: networks.prepare),
# the prompt encoder's and the sampler's; in a mode with a camera its motion and the image effects.
ROW_COLUMNS = (*(name for name, (_, read) in DERIVED.items() if read.when is not Read.NEVER
                 and name != networks.WEIGHTS_COLUMN),
               *(c for c in PROMPT_COLUMNS if c not in DERIVED), *SAMPLER_COLUMNS)
_EFFECT_COLUMNS = tuple(c for effect in INIT_EFFECTS for c in effect.columns)
MODE_COLUMNS = {
    "2d": (*_EFFECT_COLUMNS, *camera.COLUMNS_2D, *camera.FLIP_COLUMNS),
    "3d": (*_EFFECT_COLUMNS, *camera.COLUMNS_3D),
}


def check_table(table: FrameTable) -> None:
    """Refuse what this runtime cannot render, before loading anything (in video mode this reads the
    input video's frame count). A table that breaks the contract is a RenderError too."""
    try:
        _check_contract(table)
        _check_values(table)
        _check_units(table)
    except TableError as e:
        raise RenderError(e.message, e.help) from None


def _check_contract(table: FrameTable) -> None:
    s = table.settings
    missing = [name for name in SETTINGS_READ if name not in s]
    if missing:
        raise MissingSetting("the table has no setting " + ", ".join(f"`{name}`" for name in missing))
    table.require((*ROW_COLUMNS, *MODE_COLUMNS.get(s.mode, ())))


def _check_values(table: FrameTable) -> None:
    s = table.settings
    if s.mode not in MODES:
        raise RenderError(f"mode {s.mode!r} is not supported by this runtime", "use one of " + ", ".join(MODES))
    mode = mode_of(s.mode)
    if len(table) == 0:
        raise RenderError("the scene has no frames", "set frames (or duration) to at least 1")
    if s.sampler not in samplers.SAMPLERS:
        raise RenderError(
            f"sampler {s.sampler!r} is not available", "use one of " + ", ".join(samplers.SAMPLERS)
        )
    if s.border not in BORDERS:
        raise RenderError(f"border {s.border!r} is not known", "use one of " + ", ".join(BORDERS))
    if s.color_coherence not in effects.COLOR_SPACES:
        raise RenderError(
            f"color_coherence {s.color_coherence!r} is not known",
            "use one of " + ", ".join(effects.COLOR_SPACES),
        )
    init = s.init_image
    if init and not Path(str(init)).is_file():
        raise RenderError(f"init image {init} does not exist", "check the path of init_image")
    width, height = s.width, s.height
    if width % 8 or height % 8:
        raise RenderError(
            f"size {width}x{height} is not a multiple of 8", "use a size like 512x512 or 768x512"
        )
    if mode.uses_depth:
        for name, allowed in (("padding_mode", PADDING_MODES), ("sampling_mode", SAMPLING_MODES)):
            if s[name] not in allowed:
                raise RenderError(f"{name} {s[name]!r} is not known", "use one of " + ", ".join(allowed))
    if mode.reads_video:
        video_selection(s, len(table))
    if mode.camera and hybrid.uses_video(s):
        _check_hybrid(table)


# the hybrid video's settings and the columns its frames read (runtime/hybrid.py), required once it is on
HYBRID_SETTINGS = ("hybrid_composite", "hybrid_motion", "hybrid_motion_use_prev_img", "hybrid_flow_method",
                   "hybrid_flow_consistency", "hybrid_consistency_blur", "hybrid_comp_mask_type",
                   "hybrid_comp_mask_inverse", "hybrid_comp_mask_equalize", "hybrid_comp_mask_auto_contrast",
                   "hybrid_use_first_frame_as_init_image", "hybrid_use_init_image")
HYBRID_COLUMNS = ("hybrid_comp_alpha", "hybrid_comp_mask_blend_alpha", "hybrid_comp_mask_contrast",
                  "hybrid_comp_mask_auto_contrast_cutoff_high", "hybrid_comp_mask_auto_contrast_cutoff_low",
                  "hybrid_flow_factor")
_HYBRID_CHOICES = {"hybrid_composite": ("none", "normal", "before_motion", "after_generation"),
                   "hybrid_motion": ("none", "optical_flow", "perspective", "affine"),
                   "hybrid_flow_method": hybrid.FLOW_METHODS,
                   "hybrid_comp_mask_type": ("none", "depth", "video_depth", "blend", "difference"),
                   "hybrid_comp_mask_equalize": ("none", "before", "after", "both")}


def _check_hybrid(table: FrameTable) -> None:
    """A 2D/3D scene with hybrid video: its settings, columns and video (or still) are there, before any model
    loads (the video's length as in video mode: one selected frame per row)."""
    s = table.settings
    missing = [name for name in HYBRID_SETTINGS if name not in s]
    if missing:
        raise MissingSetting("the table has no setting " + ", ".join(f"`{name}`" for name in missing))
    table.require(HYBRID_COLUMNS)
    for name, allowed in _HYBRID_CHOICES.items():
        if s[name] not in allowed:
            raise RenderError(f"{name} {s[name]!r} is not known", "use one of " + ", ".join(allowed))
    raft = raft_weights_path()
    if s.hybrid_motion == "optical_flow" and s.hybrid_flow_method == "raft" and not raft.is_file():
        raise RenderError(f"hybrid_flow_method raft needs torchvision's RAFT-large weights, which are not at {raft}",
                          f"download {RAFT_URL} and put it there, or use dis_medium, dis_fine or farneback")
    if s.hybrid_use_init_image:
        if not s.init_image:
            raise RenderError("hybrid_use_init_image uses the init image as the hybrid video, but there is none",
                              'set init_image "still.png", or hybrid_use_init_image false')
        return
    if not s.video_init_path:
        raise RenderError(
            f"hybrid video (hybrid_composite {s.hybrid_composite}, hybrid_motion {s.hybrid_motion}) needs an input "
            "video", 'set video_init_path "clip.mp4" in the scene, or hybrid_use_init_image true for a still')
    video_selection(s, len(table))


def _check_units(table: FrameTable) -> None:
    """Each ControlNet unit's columns are in the table and its files are there, before anything loads (a
    render that would fail at its first frame never touches the output folder)."""
    for unit in active_units(table.settings):
        table.require(tuple(column(unit.number, f) for f in UNIT_SCHEDULES))
        paths = [("model", unit.model)] if unit.model.startswith(("/", "~", ".")) else []
        paths += [("source", unit.source)] if unit.source and not unit.loopback else []
        paths += [("mask", unit.mask)] if unit.mask else []
        for what, path in paths:
            if not Path(path).expanduser().exists():
                raise RenderError(f"ControlNet unit {unit.number}: its {what} {path} does not exist",
                                  "check the path in the scene (relative paths are relative to the scene file)")
        if not unit.loopback and not unit.source:
            raise RenderError(f"ControlNet unit {unit.number} has no control source",
                              f"set {column(unit.number, 'vid_path')} or {column(unit.number, 'loopback_mode')} true")


def needs_depth(settings: Settings) -> bool:
    """Deforum loads a depth model in 3D for depth warping or for saving depth maps; a ControlNet unit with
    the `depth` preprocessor, or a hybrid composite with a depth mask, needs one in any mode with a camera."""
    in_3d = mode_of(settings.mode).uses_depth and bool(settings.use_depth_warping or settings.save_depth_maps)
    return in_3d or any(unit.module == "depth" for unit in active_units(settings)) or _hybrid_depth_mask(settings)


def _hybrid_depth_mask(settings: Settings) -> bool:
    """A hybrid composite masked by depth (the frame's or the video's) needs a depth model, in 2D too."""
    return mode_of(settings.mode).camera and settings.hybrid_composite != "none" and \
        settings.hybrid_comp_mask_type in ("depth", "video_depth")


def mode_warnings(settings: Settings) -> list[str]:
    """Settings the scene sets that this mode does not use."""
    mode = mode_of(settings.mode)
    out = []
    if settings.save_depth_maps and not mode.uses_depth:
        out.append(f"save_depth_maps applies to mode 3d only; no depth maps are written in mode {mode.name}")
    if mode.reads_video and settings.video_mask_path:
        out.append("video_mask_path is not supported yet and is ignored: every pixel follows the prompt")
    return out



__all__ = ["SETTINGS_READ", "SUPPORTED_MODES", "check_table", "mode_warnings", "needs_depth"]
