"""Deforum's own names: what the A1111 extension and the notebook call things that dfm calls otherwise.

The parameter catalogue (`catalogue.py`) holds every dfm name with its Deforum key (`Param.deforum`);
this module adds only what is Deforum's own and not a dfm parameter: the extension's labels for samplers,
modes and depth models (colour spaces are the catalogue's choices in capitals: `deforum_dialect.color_label`);
keys Deforum renamed or removed; the switches that gate a schedule; the feature groups dfm does not have
(`FEATURES`); what its schedule expressions may use; and the off switches an export writes. It also holds
the shape of an import warning (`ImportNote`: its text and its `Impact` on the render).
`deforum_dialect.py`, `deforum_import.py` and `deforum_export.py` read these tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from . import catalogue as cat
from .catalogue import Param


class Impact(str, Enum):
    """How an import warning bears on the render: `dfm import` leads with DIFFERS and only counts NO_EFFECT."""

    DIFFERS = "differs"  # the render differs from Deforum's: a feature in use that dfm lacks, a value approximated
    NOTE = "note"  # the same render, but worth knowing: a random seed fixed, a prompt merged once
    NO_EFFECT = "no effect"  # left out because it does nothing here: switched off, at its default, unused in the mode


class ImportNote(str):
    """One import warning: its text (all `ImportResult.warnings` ever held, so it compares as that string) plus
    its impact and the file keys it covers, for the summary the command line prints."""

    impact: Impact
    keys: tuple[str, ...]

    def __new__(cls, text: str, impact: Impact = Impact.DIFFERS, keys: tuple[str, ...] = ()) -> ImportNote:
        note = super().__new__(cls, text)
        note.impact = impact
        note.keys = tuple(keys)
        return note


def impact_of(warning: str) -> Impact:
    """A warning's impact; a plain string (a Parseq import's warning) might change the render."""
    return getattr(warning, "impact", Impact.DIFFERS)

# dfm sampler -> the A1111 label (normalise_choice of each label gives the dfm name back)
A1111_SAMPLERS: dict[str, str] = {
    "flow_euler": "Flow Euler",  # dfm's flow-matching Euler (Flux, SD3); Forge shows it as "Euler" for those models
    "euler": "Euler", "euler_a": "Euler a", "klms": "LMS", "klms_karras": "LMS Karras", "heun": "Heun",
    "dpm2": "DPM2", "dpm2_karras": "DPM2 Karras", "dpm2_a": "DPM2 a", "dpm2_a_karras": "DPM2 a Karras",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras", "ddim": "DDIM", "plms": "PLMS", "unipc": "UniPC",
    # few-step samplers: A1111's "LCM"; the trailing-spacing ones have no A1111 label of their own (A1111 sets the
    # spacing as a separate schedule type), so they export under a dfm label that imports back to the same sampler
    "lcm": "LCM", "euler_trailing": "Euler Trailing", "euler_a_trailing": "Euler a Trailing",
    "dpmpp_2m_trailing": "DPM++ 2M Trailing", "dpmpp_2m_sde_trailing": "DPM++ 2M SDE Trailing",
    # A1111 1.9+ reads a label ending in a schedule type's name as that sampler with that schedule
    "euler_karras": "Euler Karras", "euler_exponential": "Euler Exponential", "heun_karras": "Heun Karras",
    "dpmpp_2m_exponential": "DPM++ 2M Exponential", "dpmpp_2m_sde_exponential": "DPM++ 2M SDE Exponential",
}
# A1111 1.9+'s separate "Schedule type" (its `scheduler` field; modules/sd_schedulers.py) -> the suffix of the dfm
# sampler that has that schedule. "uniform" is the sampler's plain schedule (k-diffusion's get_sigmas: what dfm's
# plain samplers reproduce with timestep_spacing "linspace").
SCHEDULE_TYPES = {"uniform": "", "karras": "_karras", "exponential": "_exponential", "sgm_uniform": "_trailing",
                  "sgmuniform": "_trailing", "simple": "_trailing"}
# schedule types matched only approximately: imported with a warning
APPROXIMATE_SCHEDULES = {
    "sgm_uniform": "SGM Uniform spaces the timesteps evenly from 999 as diffusers' \"trailing\" does, but "
                   "keeps them fractional (diffusers rounds them to integers)",
    "sgmuniform": "SGM Uniform spaces the timesteps evenly from 999 as diffusers' \"trailing\" does, but "
                  "keeps them fractional (diffusers rounds them to integers)",
    "simple": "Simple takes every (1000/steps)th timestep from 999 down, as \"trailing\" does, rounding "
              "differently when 1000 is not a multiple of the steps",
}
# A1111 1.9+'s "Automatic" schedule type is the sampler's own default (modules/sd_samplers_kdiffusion.py options)
AUTOMATIC_SCHEDULE = {"dpmpp_2m": "karras", "dpmpp_sde": "karras", "dpmpp_2m_sde": "exponential",
                      "dpmpp_2s_a": "karras", "dpmpp_3m_sde": "exponential"}
# A1111 samplers with no exact diffusers scheduler that the importer maps to the nearest one, with a warning (a
# scene's own `sampler` refuses them: DFM107)
APPROXIMATE_SAMPLERS = {
    "dpmpp_sde": ("dpmpp_2m_sde", "DPM++ SDE is a second-order single-step SDE solver (two UNet calls a step, "
                  "Brownian-tree noise); dpmpp_2m_sde is the multistep DPM++ SDE diffusers has (one call a step)"),
    "dpmpp_sde_karras": ("dpmpp_2m_sde_karras", "DPM++ SDE Karras is a second-order single-step SDE solver (two "
                         "UNet calls a step, Brownian-tree noise); dpmpp_2m_sde_karras is the multistep DPM++ SDE "
                         "diffusers has, with the same Karras sigmas (one call a step)"),
}


def a1111_sampler(sampler: str, schedule: str | None = None) -> tuple[str | None, str | None]:
    """The dfm sampler for an A1111/Deforum sampler label ("DPM++ 2M Karras", "Euler a") and, from A1111
    1.9+, its separate schedule type ("Karras", "Automatic"…), with a warning when the match is only
    approximate; (None, why) when dfm has none. A label ending in a schedule type's name is that sampler
    with that schedule, as A1111 reads it, unless a schedule type other than Automatic is given."""
    p = cat.BY_NAME["sampler"]
    norm = cat.normalise_choice(sampler)
    sched = cat.normalise_choice(schedule) if schedule else None
    in_label = None
    for suffix in sorted(SCHEDULE_TYPES, key=len, reverse=True):  # "sgm_uniform" before "uniform"
        if norm.endswith("_" + suffix):
            norm, in_label = norm[: -len(suffix) - 1], suffix
            break
    if sched and sched != "automatic":  # an explicit schedule type wins over the label's
        if sched not in SCHEDULE_TYPES:
            return None, f"dfm has no sampler with A1111's schedule type `{schedule}`"
    elif in_label:
        sched = in_label
    elif sched == "automatic" and norm in AUTOMATIC_SCHEDULE:
        sched = AUTOMATIC_SCHEDULE[norm]  # a 1.9+ file: "DPM++ 2M" with Automatic is DPM++ 2M Karras
    else:
        sched = None
    candidate = norm + (SCHEDULE_TYPES[sched] if sched else "")
    warning = APPROXIMATE_SCHEDULES.get(sched or "")
    if candidate in APPROXIMATE_SAMPLERS:
        candidate, warning = APPROXIMATE_SAMPLERS[candidate]
    name = cat.resolve_choice(p, candidate)
    if name is None:
        if candidate in cat.UNSUPPORTED_SAMPLERS:
            return None, cat.UNSUPPORTED_SAMPLERS[candidate]
        label = sampler + (f" with schedule type {schedule}" if schedule else "")
        return None, f"dfm has no sampler `{label}`"
    return name, warning
A1111_MODES = {"none": "None", "2d": "2D", "3d": "3D", "video": "Video Input", "interpolation": "Interpolation"}
A1111_DEPTH = {"Intel/dpt-hybrid-midas": "Midas-3-Hybrid"}  # dfm depth model -> depth_algorithm

# Renamed keys (Deforum's deprecation map, plus notebook spellings the catalogue does not alias)
RENAMED_KEYS = {
    "flip_2d_perspective": "enable_perspective_flip",
    "skip_video_for_run_all": "skip_video_creation",
    "near_plane": "near_schedule",
    "far_plane": "far_schedule",
    "enable_schedule_samplers": "enable_sampler_scheduling",
    "use_zoe_depth": "depth_algorithm",
}
REMOVED_KEYS = {"histogram_matching": "removed from Deforum (colour matching is `color_coherence`)"}

# Switches that gate a schedule: (switch, value that enables it, gated keys)
GATES: tuple[tuple[str, object, tuple[str, ...]], ...] = (
    ("enable_steps_scheduling", True, ("steps_schedule",)),
    ("enable_perspective_flip", True, ("perspective_flip_theta", "perspective_flip_phi",
                                       "perspective_flip_gamma", "perspective_flip_fv")),
    ("use_mask_video", True, ("video_mask_path",)),
    ("seed_behavior", "schedule", ("seed_schedule",)),
    ("enable_subseed_scheduling", True, ("subseed_schedule", "subseed_strength_schedule")),
    ("enable_clipskip_scheduling", True, ("clipskip_schedule",)),
)
# what Deforum uses for `seed_behavior schedule` when the file has no seed_schedule
DEFAULT_SEED_SCHEDULE = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'


@dataclass(frozen=True)
class Feature:
    """A Deforum feature dfm does not have: its keys, why, and the values that mean "off"."""

    label: str
    pattern: str
    reason: str
    # switch key -> values meaning "not in use"; a switch outside `pattern` (noise_type for perlin) is read, not
    # taken, from the file
    off: Mapping[str, tuple] = field(default_factory=dict)
    harmless: bool = False  # its keys never change the render (a record of the run, notebook plumbing)


_NONE = ("None", "none", "", None, False, 0, "0")
FEATURES: tuple[Feature, ...] = (
    Feature("hybrid video extras", r"hybrid_generate_inputframes|hybrid_generate_human_masks|"
            r"hybrid_comp_save_extra_frames", "dfm reads the hybrid video itself, has no human masks (Robust Video "
            "Matting) and does not save the intermediate composites", {"hybrid_generate_human_masks": _NONE,
                                                                     "hybrid_comp_save_extra_frames": _NONE}),
    Feature("mask", r"use_mask|use_alpha_as_mask|mask_file|invert_mask|mask_contrast_adjust|"
            r"mask_brightness_adjust|overlay_mask|mask_overlay_blur|fill|full_res_mask|full_res_mask_padding|"
            r"use_noise_mask|mask_schedule|noise_mask_schedule", "dfm has no inpainting masks yet",
            {"use_mask": _NONE, "use_noise_mask": _NONE}),
    Feature("guided-images (looper)", r"use_looper|init_images|image_strength_schedule|blendFactorMax|"
            r"blendFactorSlope|tweening_frames_schedule|color_correction_factor",
            "dfm has no guided-images looper", {"use_looper": _NONE}),
    Feature("sampler schedule", r"enable_sampler_scheduling|sampler_schedule",
            "dfm uses one sampler for the whole scene", {"enable_sampler_scheduling": _NONE}),
    Feature("checkpoint schedule", r"enable_checkpoint_scheduling|checkpoint_schedule",
            "dfm uses one model for the whole scene", {"enable_checkpoint_scheduling": _NONE}),
    Feature("noise multiplier", r"enable_noise_multiplier_scheduling|noise_multiplier_schedule",
            "dfm has no img2img initial-noise multiplier (A1111 option)",
            {"enable_noise_multiplier_scheduling": _NONE}),
    Feature("sampler eta", r"enable_ddim_eta_scheduling|ddim_eta_schedule|enable_ancestral_eta_scheduling|"
            r"ancestral_eta_schedule|ddim_eta", "dfm uses each scheduler's own eta",
            {"enable_ddim_eta_scheduling": _NONE, "enable_ancestral_eta_scheduling": _NONE}),
    Feature("InstructPix2Pix", r"pix2pix_img_cfg_scale_schedule",
            "read only with an InstructPix2Pix model, which dfm does not load", harmless=True),
    Feature("aspect ratio", r"aspect_ratio_schedule|aspect_ratio_use_old_formula",
            "dfm's 3D warp uses the frame's own aspect ratio"),
    Feature("diffusion redo", r"diffusion_redo", "dfm has no diffusion redo (it diffuses each frame once, or twice "
            "with optical_flow_redo_generation)", {"diffusion_redo": _NONE}),
    Feature("perlin noise", r"perlin_octaves|perlin_persistence|perlin_w|perlin_h",
            "dfm's noise is Gaussian (Deforum's 'uniform')", {"noise_type": ("uniform", "Uniform")}),
    Feature("colour source", r"color_coherence_image_path|color_coherence_video_every_N_frames|"
            r"legacy_colormatch", "dfm matches colours to the first frame only"),
    Feature("video extraction", r"overwrite_extracted_frames|delete_input_frames",
            "dfm decodes the input video itself", harmless=True),
    Feature("Parseq", r"parseq_manifest|parseq_use_deltas|parseq_non_schedule_overrides|"
            r"fetched_parseq_manifest_summary", "import a Parseq manifest with `dfm import` on the manifest",
            {"parseq_manifest": _NONE}),
    Feature("resume", r"resume_from_timestring|resume_timestring",
            "dfm resumes an interrupted render by itself (run the same `dfm render` again)",
            {"resume_from_timestring": _NONE}),
    Feature("frame interpolation extras", r"frame_interpolation_keep_imgs|frame_interpolation_slow_mo_amount",
            "dfm keeps its interpolation frames only while it works, and slows motion by `interpolate_times` "
            "(`interpolate_slow_mo`)", {"frame_interpolation_slow_mo_enabled": _NONE}),
    Feature("output option", r"make_gif|delete_imgs|store_frames_in_ram|save_samples|save_settings|"
            r"display_samples|save_sample_per_step|show_sample_per_step|filename_format|make_grid|grid_rows|"
            r"outdir|bit_depth_output|ffmpeg_.*|create_gif", "dfm always writes PNG frames and video.mp4",
            {"make_gif": _NONE, "delete_imgs": _NONE, "store_frames_in_ram": _NONE}),
    Feature("A1111 image option", r"show_info_on_ui|tiling|restore_faces|reroll_blank_frames|reroll_patience",
            "dfm has no tiling, face restoration or blank-frame reroll",
            {"show_info_on_ui": (True, False), "tiling": _NONE, "restore_faces": _NONE,
             "reroll_blank_frames": ("ignore",)}),
    Feature("motion preview", r"motion_preview_mode", "`dfm preview` shows the camera motion without a model",
            {"motion_preview_mode": _NONE}),
    Feature("notebook gradient guidance", r"mean_scale|var_scale|exposure_scale|exposure_target|"
            r"colormatch_scale|colormatch_image|colormatch_n_colors|ignore_sat_weight|clip_name|clip_scale|"
            r"aesthetics_scale|cutn|cut_pow|init_mse_scale|init_mse_image|blue_scale|gradient_wrt|"
            r"gradient_add_to|decode_method|grad_threshold_type|clamp_grad_threshold|clamp_start|clamp_stop|"
            r"grad_inject_timing|cond_uncond_sync|dynamic_threshold|static_threshold",
            "dfm has no gradient guidance"),
    Feature("notebook internal", r"precision|C|f|timestring|init_latent|init_sample|init_sample_raw|init_c|"
            r"mask_sample|seed_internal|cond_prompt|uncond_prompt|prompt|prompt_weighting|"
            r"normalize_prompt_weights|log_weighted_subprompts|add_init_noise|init_noise|"
            r"override_settings_with_file|settings_file|custom_settings_file|models_path|configs_path|"
            r"output_path|mount_google_drive|map_location|model_config|custom_config_path|"
            r"custom_checkpoint_path|interpolate_x_frames_legacy", "internal to the notebook", harmless=True),
    Feature("provenance", r"batch_name|sd_model_hash|deforum_git_commit_id", "a record of the run, not a setting",
            harmless=True),
)


# Deforum's numexpr functions; the A1111 extension splits schedules on every comma, so only
# one-argument calls survive there.
DEFORUM_FUNCTIONS = frozenset({"sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
                               "arcsinh", "arccosh", "arctanh", "log", "log10", "log1p", "exp", "expm1", "sqrt",
                               "abs"})
DEFORUM_VARIABLES = frozenset({"t", "max_f"})
DEFORUM_OPERATORS = frozenset({"+", "-", "*", "/", "%", "**"})
# Off switches written into every export, so that values left in the user's Deforum UI do not leak in.
NEUTRAL_SETTINGS: dict[str, object] = {
    "positive_prompts": "", "negative_prompts": "", "animation_prompts_positive": "",
    "animation_prompts_negative": "", "noise_type": "uniform",
    "enable_sampler_scheduling": False, "enable_checkpoint_scheduling": False,
    "enable_noise_multiplier_scheduling": False,
    "enable_ddim_eta_scheduling": False, "enable_ancestral_eta_scheduling": False, "use_mask": False,
    "use_noise_mask": False, "diffusion_redo": "0",
    "use_looper": False, "parseq_manifest": "", "resume_from_timestring": False,
}


# Deforum keys the importer reads into other statements: what a scene writes instead
WRITTEN_AS = {
    "W": "write `size WIDTHxHEIGHT`", "H": "write `size WIDTHxHEIGHT`",
    "seed_resize_from_w": "write `seed_resize_from WIDTHxHEIGHT` (A1111's resize seed from width/height)",
    "seed_resize_from_h": "write `seed_resize_from WIDTHxHEIGHT` (A1111's resize seed from width/height)",
    "use_init": "an `init_image` statement is the switch", "strength_0_no_init": "frame 0 without an init image "
    "is always txt2img in dfm", "prompts": 'write `prompt FRAME "text"` lines', "positive_prompts":
    'write `prompt` lines (a common part goes into each one)', "negative_prompts": 'write `negative "text"`',
    "enable_steps_scheduling": "a `steps` schedule is always used when the scene has one",
    "enable_subseed_scheduling": "the `subseed` and `subseed_strength` schedules are always used (strength 0: "
    "no variation)", "enable_clipskip_scheduling": "a `clip_skip` schedule is always used (1: no skip)",
    "noise_type": "dfm's noise is Gaussian (Deforum's `uniform`); there is no perlin noise",
    "use_mask_video": "dfm has no mask video yet", "skip_video_creation": "write `save_video off`",
    "sd_model_name": 'write `model "path/or/hub-id"`',
    "add_soundtrack": 'write `audio "song.mp3"` (its "File")', "sd_model_hash": 'write `model "…" sha256 "…"`',
}


for _key in ("r_upscale_video", "r_upscale_factor", "r_upscale_model", "r_upscale_keep_imgs"):
    WRITTEN_AS[_key] = ("Deforum's upscaler names a Real-ESRGAN ncnn model: dfm's is `upscale_model \"file\"` (a "
                        ".safetensors or .pth upscaler) and `upscale_scale`")
for _n in range(1, 6):  # Deforum's two ControlNet keys about A1111 itself, not about the render
    WRITTEN_AS[f"cn_{_n}_low_vram"] = "A1111's memory switch for a ControlNet unit: dfm keeps it on the render's device"
    WRITTEN_AS[f"cn_{_n}_overwrite_frames"] = ("Deforum's switch for extracting a ControlNet unit's video again: dfm "
                                             "reads the video itself")


def explain_key(key: str) -> str | None:
    """What dfm says of a Deforum key it has no parameter for (a feature it lacks, a renamed or removed
    key), or None when the key is not Deforum's. `dfm check` and `dfm import` tell the user the same."""
    if key in WRITTEN_AS:
        return WRITTEN_AS[key]
    if key in REMOVED_KEYS:
        return f"Deforum's `{key}` was {REMOVED_KEYS[key]}"
    renamed = RENAMED_KEYS.get(key)
    if renamed is not None and param_for_key(renamed) is not None:
        return f"Deforum renamed it `{renamed}`; dfm calls it `{param_for_key(renamed).name}`"
    for feature in FEATURES:
        if re.fullmatch(feature.pattern, key):
            return f"it belongs to Deforum's {feature.label}: {feature.reason}"
    return None


def param_for_key(key: str) -> Param | None:
    """The dfm parameter a Deforum settings key stands for: the catalogue's `deforum` column first, then the
    names and aliases dfm itself accepts (the notebook's spellings, `near_plane`, `scale`, are aliases)."""
    for p in cat.PARAMS:
        if p.deforum == key:
            return p
    return cat.lookup(key)
