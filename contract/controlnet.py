"""ControlNet units as the compiler hands them to the runtime: names, choices and one unit's settings.

A scene has up to MAX_UNITS units, numbered 1..5 as Deforum numbers them (`cn_1_model`, `cn_1_weight`, …).
A unit is *active* when its model is set and `cn_N_enabled` is not false. Only an active unit is in the
table: its settings (`cn_N_<field>`) and its three schedule columns (`cn_N_weight`, `cn_N_guidance_start`,
`cn_N_guidance_end`), and the setting `controlnet_units` lists the active numbers in order. A scene without
an active unit has none of them, so its table (and every fingerprint of it) is what it was before units
existed.

Torch-free: the compiler, the checker and the language server read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_UNITS = 5
UNITS_SETTING = "controlnet_units"  # the table setting: the active unit numbers, in order

# the per-frame schedules of a unit (table columns `cn_N_<name>`), with Deforum's defaults
UNIT_SCHEDULES = ("weight", "guidance_start", "guidance_end")

# sd-webui-controlnet's resize modes; Deforum's files use the older labels (the choice aliases below)
RESIZE_MODES = ("crop_and_resize", "just_resize", "resize_and_fill")
RESIZE_ALIASES = {
    "inner_fit_scale_to_fit": "crop_and_resize", "inner_fit": "crop_and_resize", "crop": "crop_and_resize",
    "outer_fit_shrink_to_fit": "resize_and_fill", "outer_fit": "resize_and_fill", "fill": "resize_and_fill",
    "resize": "just_resize", "stretch": "just_resize",
}
# sd-webui-controlnet's control modes: balanced (the residuals as they are, on every pass), prompt ("My
# prompt is more important": each residual scaled by 0.825^(12 - i), deep ones most, on every pass), control
# ("ControlNet is more important": the same scaling, on the conditional passes only)
CONTROL_MODES = ("balanced", "prompt", "control")
CONTROL_ALIASES = {
    "my_prompt_is_more_important": "prompt", "prompt_is_more_important": "prompt", "more_prompt": "prompt",
    "controlnet_is_more_important": "control", "more_control": "control", "guess": "control",
}


# ControlNet Union (SDXL, xinsir/controlnet-union-sdxl-1.0): one model for several kinds of control, told which
# by its control type, in the model's index order
UNION_TYPES = ("openpose", "depth", "softedge", "canny", "normal", "segment", "tile", "repaint")
# why a scene with units cannot render on SD3 / SD3.5 (the check's DFM407 and the render's error say it)
SD3_CONTROLNET_WHY = ("SD3 ControlNet has no img2img pipeline in diffusers (dfm's frames after the first are "
                      "img2img)")
KONTEXT_CONTROLNET_WHY = ("its context image's tokens join the frame's, and Flux ControlNets are trained on the "
                          "frame's alone")
# Flux.1 ControlNet Union (InstantX/FLUX.1-dev-Controlnet-Union, Shakker-Labs' Union-Pro): its `controlnet_mode` of
# each control type it has (blur 3, gray 5 and low quality 6 have no UNION_TYPES name)
FLUX_UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "openpose": 4}
# the control type a preprocessor's image is (`cn_N_union_type auto`)
UNION_FOR_MODULE = {
    "openpose": "openpose", "depth": "depth", "softedge_hed": "softedge", "softedge_pidinet": "softedge",
    "canny": "canny", "lineart": "canny", "lineart_anime": "canny", "lineart_standard": "canny", "mlsd": "canny",
    "normal_bae": "normal",
}


@dataclass(frozen=True)
class Preprocessor:
    """A preprocessor (A1111's "module"): what turns a source image into the control image."""

    name: str
    doc: str
    aux_class: str | None = None  # the controlnet_aux detector class; None: dfm's own (none, canny, depth)
    weights: tuple[str, ...] = ()  # the files its `from_pretrained` reads from ANNOTATOR_REPO (none: no weights)
    # what threshold_a / threshold_b mean for it, with sd-webui-controlnet's defaults; () when unused
    thresholds: tuple[tuple[str, float], ...] = ()


ANNOTATOR_REPO = "lllyasviel/Annotators"  # where controlnet_aux's detectors read their weights from

PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in (
    Preprocessor("none", "the source image is the control image"),
    Preprocessor("invert", "the source image inverted (white lines on black become black on white)"),
    Preprocessor("canny", "Canny edges (OpenCV, no weights)", thresholds=(("low", 100.0), ("high", 200.0))),
    Preprocessor("depth", "a depth map from dfm's depth model (`depth_model`), near is white"),
    Preprocessor("lineart_standard", "line art from a difference of Gaussians (no weights)",
                 aux_class="LineartStandardDetector"),
    Preprocessor("shuffle", "the source's content shuffled (no weights)", aux_class="ContentShuffleDetector"),
    Preprocessor("lineart", "line art (controlnet-aux LineartDetector)", aux_class="LineartDetector",
                 weights=("sk_model.pth", "sk_model2.pth")),
    Preprocessor("lineart_anime", "anime line art (controlnet-aux LineartAnimeDetector)",
                 aux_class="LineartAnimeDetector", weights=("netG.pth",)),
    Preprocessor("softedge_hed", "soft edges, HED (controlnet-aux HEDdetector)", aux_class="HEDdetector",
                 weights=("ControlNetHED.pth",)),
    Preprocessor("softedge_pidinet", "soft edges, PiDiNet (controlnet-aux PidiNetDetector)",
                 aux_class="PidiNetDetector", weights=("table5_pidinet.pth",)),
    Preprocessor("openpose", "body pose (controlnet-aux OpenposeDetector)", aux_class="OpenposeDetector",
                 weights=("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")),
    Preprocessor("normal_bae", "surface normals (controlnet-aux NormalBaeDetector)", aux_class="NormalBaeDetector",
                 weights=("scannet.pt",)),
    Preprocessor("mlsd", "straight lines (controlnet-aux MLSDdetector)", aux_class="MLSDdetector",
                 weights=("mlsd_large_512_fp32.pth",),
                 thresholds=(("value threshold", 0.1), ("distance threshold", 0.1))),
)}
# A1111 / sd-webui-controlnet module names -> dfm's
PREPROCESSOR_ALIASES = {
    "depth_midas": "depth", "depth_zoe": "depth", "depth_leres": "depth", "depth_leres_": "depth",
    "depth_anything": "depth", "depth_anything_v2": "depth", "depth_hand_refiner": "depth",
    "lineart_realistic": "lineart", "lineart_coarse": "lineart", "hed": "softedge_hed", "softedge_hedsafe":
    "softedge_hed", "pidinet": "softedge_pidinet", "softedge_pidisafe": "softedge_pidinet",
    "openpose_full": "openpose", "openpose_hand": "openpose", "openpose_face": "openpose", "dw_openpose_full":
    "openpose", "normal_map": "normal_bae", "mlsd_straight_line": "mlsd", "shuffle_content": "shuffle",
    "invert_from_white_bg_black_line": "invert", "inverted": "invert", "reference_only": None,
}


def column(n: int, field: str) -> str:
    """The table name of unit n's setting or schedule `field`: `cn_1_weight`."""
    return f"cn_{n}_{field}"


@dataclass(frozen=True)
class UnitSettings:
    """One active unit, read from the table's settings (the compiler has resolved and checked each)."""

    number: int
    model: str  # a hub id, or an absolute path to a diffusers folder or a single .safetensors file
    module: str  # a PREPROCESSORS name
    source: str | None  # absolute path: a video, an image or a folder of frames; None with loopback
    mask: str | None  # absolute path of a mask video/image (white: control applies), or None
    loopback: bool  # the control image is the frame's img2img source (the previous frame, warped)
    processor_res: int  # the preprocessor's working resolution (short side), pixels
    threshold_a: float | None  # None: the preprocessor's default (Preprocessor.thresholds)
    threshold_b: float | None
    resize_mode: str  # RESIZE_MODES
    control_mode: str  # CONTROL_MODES
    pixel_perfect: bool  # processor_res follows the frame size (sd-webui-controlnet's pixel perfect)
    union_type: str = ""  # a ControlNet Union's control type (UNION_TYPES); "" for a plain ControlNet

    @classmethod
    def from_settings(cls, settings: Mapping[str, object], n: int) -> UnitSettings:
        def get(field: str) -> object:
            return settings[column(n, field)]

        def opt_float(field: str) -> float | None:
            v = get(field)
            return None if v is None else float(v)

        return cls(
            number=n, model=str(get("model")), module=str(get("module")),
            source=None if get("vid_path") is None else str(get("vid_path")),
            mask=None if get("mask_vid_path") is None else str(get("mask_vid_path")),
            loopback=bool(get("loopback_mode")), processor_res=int(get("processor_res")),
            threshold_a=opt_float("threshold_a"), threshold_b=opt_float("threshold_b"),
            resize_mode=str(get("resize_mode")), control_mode=str(get("control_mode")),
            pixel_perfect=bool(get("pixel_perfect")),
            union_type=str(settings.get(column(n, "union_type")) or ""),
        )


# XLabs' own Flux ControlNet files (`double_blocks.*`): diffusers reads only their diffusers versions
XLABS_LAYOUT_WHY = "an XLabs Flux ControlNet in XLabs' own file layout, which diffusers does not read"
XLABS_LAYOUT_HELP = ("use its diffusers version (XLabs publishes them, e.g. XLabs-AI/flux-controlnet-canny-diffusers), "
                     "or a FluxControlNetModel folder")


def transformer_controlnet_base(keys) -> str | None:
    """What a transformer ControlNet's tensor names say it is for: "flux" (diffusers' FluxControlNetModel),
    "flux-xlabs" (XLabs' own layout), "sd3" (SD3ControlNetModel), else None (a UNet's, or nothing known)."""
    keys = list(keys)
    if any(k.startswith(("single_transformer_blocks.", "controlnet_single_blocks.", "controlnet_x_embedder."))
           for k in keys):
        return "flux"
    if any(k.startswith("double_blocks.") for k in keys):
        return "flux-xlabs"
    if any(k.startswith("pos_embed_input.") for k in keys):
        return "sd3"
    return None


def control_folder(n: int) -> str:
    """Where `save_control_frames` puts unit n's control images in a render folder (NNNNN.png inside)."""
    return f"controlnet_{int(n)}"


def saved_control_folders(settings: Mapping[str, object]) -> list[str]:
    """The folders a render of these settings writes control images into (none without save_control_frames)."""
    if not settings.get("save_control_frames"):
        return []
    return [control_folder(u.number) for u in active_units(settings)]


def active_units(settings: Mapping[str, object]) -> tuple[UnitSettings, ...]:
    """The table's active units, in number order; () for a scene without ControlNet."""
    return tuple(UnitSettings.from_settings(settings, int(n)) for n in settings.get(UNITS_SETTING, ()) or ())
