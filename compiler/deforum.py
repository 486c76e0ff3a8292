"""Deforum settings ⇄ .dfm: import the notebook's or the A1111 extension's settings, export A1111 settings.

Deforum is a "dialect" here: a few tables of names (the parameter catalogue holds every dfm name and
its Deforum aliases; this module adds only what is Deforum's own: A1111 sampler labels, deprecated keys,
the feature groups dfm does not have) and small functions around them.

- `import_settings(data)` reads a settings file (JSON text or a mapping) and returns a canonical,
  checked `.dfm` text plus a warning for every key it could not carry exactly. Every key ends up in
  `mapped_keys` or `warned_keys`; nothing is dropped silently.
- `export_settings(result)` writes the A1111 extension's settings for a compiled scene. Schedules keep
  their keys where Deforum's semantics equal dfm's; segments Deforum cannot express (eased or cubic
  curves, dfm-only functions, functions with commas, which the extension splits on) are written as
  number keys that reproduce the compiled values. Each approximation is listed in `warnings`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..dsl import ir
from ..dsl.parser import parse
from . import catalogue as cat
from .catalogue import Kind, Param
from .expressions import FUNCTIONS, constant_value, environment
from .lower import split_neg
from .schedules import ResolvedKey

# ---- errors and results ----------------------------------------------------------------------------


class SettingsError(Exception):
    """A settings file dfm cannot read at all (not JSON, not an object)."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


@dataclass
class ImportResult:
    text: str
    warnings: list[str] = field(default_factory=list)
    mapped_keys: set[str] = field(default_factory=set)
    warned_keys: set[str] = field(default_factory=set)


@dataclass
class ExportResult:
    settings: dict
    warnings: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps(self.settings, indent=4, ensure_ascii=False)


# ---- Deforum's own names ---------------------------------------------------------------------------

# dfm sampler -> the A1111 label (normalise_choice of each label gives the dfm name back)
A1111_SAMPLERS: dict[str, str] = {
    "euler": "Euler", "euler_a": "Euler a", "klms": "LMS", "klms_karras": "LMS Karras", "heun": "Heun",
    "dpm2": "DPM2", "dpm2_karras": "DPM2 Karras", "dpm2_a": "DPM2 a", "dpm2_a_karras": "DPM2 a Karras",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras", "ddim": "DDIM", "plms": "PLMS", "unipc": "UniPC",
}
A1111_MODES = {"none": "None", "2d": "2D", "3d": "3D", "video": "Video Input", "interpolation": "Interpolation"}
A1111_COLOR = {"none": "None", "lab": "LAB", "hsv": "HSV", "rgb": "RGB"}
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
)


@dataclass(frozen=True)
class Feature:
    """A Deforum feature dfm does not have: its keys, why, and the values that mean "off"."""

    label: str
    pattern: str
    reason: str
    off: Mapping[str, tuple] = field(default_factory=dict)  # switch key -> values meaning "not in use"


_NONE = ("None", "none", "", None, False, 0, "0")
FEATURES: tuple[Feature, ...] = (
    Feature("ControlNet", r"cn_\d+_.*", "dfm has no ControlNet yet"),
    Feature("hybrid video", r"hybrid_.*", "dfm has no hybrid video compositing yet",
            {"hybrid_composite": _NONE, "hybrid_motion": _NONE}),
    Feature("mask", r"use_mask|use_alpha_as_mask|mask_file|invert_mask|mask_contrast_adjust|"
            r"mask_brightness_adjust|overlay_mask|mask_overlay_blur|fill|full_res_mask|full_res_mask_padding|"
            r"use_noise_mask|mask_schedule|noise_mask_schedule", "dfm has no inpainting masks yet",
            {"use_mask": _NONE, "use_noise_mask": _NONE}),
    Feature("guided-images (looper)", r"use_looper|init_images|image_strength_schedule|blendFactorMax|"
            r"blendFactorSlope|tweening_frames_schedule|color_correction_factor",
            "dfm has no guided-images looper", {"use_looper": _NONE}),
    Feature("subseed", r"enable_subseed_scheduling|subseed_schedule|subseed_strength_schedule|"
            r"seed_resize_from_w|seed_resize_from_h", "dfm has no variation seeds",
            {"enable_subseed_scheduling": _NONE, "seed_resize_from_w": _NONE, "seed_resize_from_h": _NONE}),
    Feature("sampler schedule", r"enable_sampler_scheduling|sampler_schedule",
            "dfm uses one sampler for the whole scene", {"enable_sampler_scheduling": _NONE}),
    Feature("checkpoint schedule", r"enable_checkpoint_scheduling|checkpoint_schedule",
            "dfm uses one model for the whole scene", {"enable_checkpoint_scheduling": _NONE}),
    Feature("CLIP skip", r"enable_clipskip_scheduling|clipskip_schedule", "dfm has no CLIP skip",
            {"enable_clipskip_scheduling": _NONE}),
    Feature("noise multiplier", r"enable_noise_multiplier_scheduling|noise_multiplier_schedule",
            "dfm has no img2img initial-noise multiplier (A1111 option)",
            {"enable_noise_multiplier_scheduling": _NONE}),
    Feature("sampler eta", r"enable_ddim_eta_scheduling|ddim_eta_schedule|enable_ancestral_eta_scheduling|"
            r"ancestral_eta_schedule|ddim_eta", "dfm uses each scheduler's own eta",
            {"enable_ddim_eta_scheduling": _NONE, "enable_ancestral_eta_scheduling": _NONE}),
    Feature("InstructPix2Pix", r"pix2pix_img_cfg_scale_schedule", "dfm has no InstructPix2Pix models"),
    Feature("aspect ratio", r"aspect_ratio_schedule|aspect_ratio_use_old_formula",
            "dfm's 3D warp uses the frame's own aspect ratio"),
    Feature("optical flow", r"optical_flow_cadence|cadence_flow_factor_schedule|optical_flow_redo_generation|"
            r"redo_flow_factor_schedule|diffusion_redo", "dfm has no optical-flow cadence or redo",
            {"optical_flow_cadence": _NONE, "optical_flow_redo_generation": _NONE, "diffusion_redo": _NONE}),
    Feature("perlin noise", r"perlin_octaves|perlin_persistence|perlin_w|perlin_h",
            "dfm's noise is Gaussian (Deforum's 'uniform')"),
    Feature("colour source", r"color_coherence_image_path|color_coherence_video_every_N_frames|"
            r"legacy_colormatch", "dfm matches colours to the first frame only"),
    Feature("video extraction", r"overwrite_extracted_frames|delete_input_frames",
            "dfm decodes the input video itself"),
    Feature("Parseq", r"parseq_manifest|parseq_use_deltas|parseq_non_schedule_overrides|"
            r"fetched_parseq_manifest_summary", "import a Parseq manifest with `dfm import` on the manifest",
            {"parseq_manifest": _NONE}),
    Feature("resume", r"resume_from_timestring|resume_timestring", "dfm resumes a render by itself",
            {"resume_from_timestring": _NONE}),
    Feature("soundtrack", r"add_soundtrack|soundtrack_path", "dfm writes video without sound",
            {"add_soundtrack": _NONE}),
    Feature("upscaling", r"r_upscale_.*", "dfm has no upscaler", {"r_upscale_video": _NONE}),
    Feature("frame interpolation", r"frame_interpolation_.*", "dfm has no FILM/RIFE interpolation",
            {"frame_interpolation_engine": _NONE}),
    Feature("output option", r"make_gif|delete_imgs|store_frames_in_ram|save_samples|save_settings|"
            r"display_samples|save_sample_per_step|show_sample_per_step|filename_format|make_grid|grid_rows|"
            r"outdir|bit_depth_output|ffmpeg_.*|create_gif", "dfm always writes PNG frames and video.mp4",
            {"make_gif": _NONE, "delete_imgs": _NONE, "store_frames_in_ram": _NONE}),
    Feature("A1111 image option", r"show_info_on_ui|tiling|restore_faces|reroll_blank_frames|reroll_patience|"
            r"motion_preview_mode", "not a dfm setting (`dfm plot` shows the motion schedules without rendering)",
            {"show_info_on_ui": (True, False), "tiling": _NONE, "restore_faces": _NONE,
             "motion_preview_mode": _NONE, "reroll_blank_frames": ("ignore",)}),
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
            r"custom_checkpoint_path|interpolate_x_frames_legacy", "internal to the notebook"),
    Feature("provenance", r"batch_name|sd_model_hash|deforum_git_commit_id", "a record of the run, not a setting"),
)


# ---- small helpers ---------------------------------------------------------------------------------


def quote(text: str) -> str:
    """A dfm string literal."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{body}"'


def number_text(x: float) -> str:
    """The shortest decimal that reads back as x, never in exponent form (Deforum's number keys)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return np.format_float_positional(x, unique=True, trim="-")


def _truthy(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "on")
    return bool(v)


def _group_names(keys: list[str]) -> str:
    """'cn_1_* … cn_5_*' for numbered families, else the names (shortened when many)."""
    units = sorted({m.group(1) for k in keys if (m := re.match(r"(cn_\d+)_", k))})
    if units and len(units) == len({k.split("_", 2)[1] for k in keys if k.startswith("cn_")}) and len(units) > 1:
        return f"{units[0]}_* … {units[-1]}_*"
    if len(keys) <= 8:
        return ", ".join(keys)
    return ", ".join(keys[:5]) + f", … {keys[-1]}"


def _expr(text: str) -> ir.Expr | None:
    """A dfm expression parsed from text, or None."""
    res = parse(f"x {text}")
    if res.diagnostics or len(res.scene.statements) != 1:
        return None
    args = res.scene.statements[0].args
    if len(args) != 1 or not isinstance(args[0], (ir.Number, ir.Variable, ir.Call, ir.Unary, ir.Binary)):
        return None
    return args[0]


def _frame_of(text: str, env: Mapping[str, float]) -> int | None:
    """A Deforum key position: an integer, or a numexpr expression over max_f/s, cut with int()."""
    expr = _expr(text.strip().strip("\"'"))
    if expr is None:
        return None
    try:
        value = constant_value(expr, env)
    except (KeyError, TypeError, ValueError):
        return None
    return math.trunc(value) if math.isfinite(value) else None


def split_deforum_keys(text: str) -> list[tuple[str, str, str]] | None:
    """`0:(1), "max_f-2":(where(t>5, 1, 0))` -> [(frame text, value text, curve word)], or None.

    Commas and colons inside the parentheses and quotes belong to the value (the notebook's reading,
    and what the extension's users mean)."""
    keys, i, n = [], 0, len(text)
    while True:
        while i < n and (text[i].isspace() or text[i] == ","):
            i += 1
        if i >= n:
            return keys
        colon = text.find(":", i)
        if colon < 0 or "(" in text[i:colon]:
            return None
        frame = text[i:colon].strip()
        j = colon + 1
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != "(":
            return None
        depth, k, quote_ch = 0, j, None
        while k < n:
            c = text[k]
            if quote_ch:
                quote_ch = None if c == quote_ch else quote_ch
            elif c in "\"'":
                quote_ch = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if depth != 0:
            return None
        value = text[j + 1:k]
        m = re.match(r"\s*([A-Za-z_]\w*)?", text[k + 1:])
        curve = m.group(1) or ""
        i = k + 1 + m.end()
        if i < n and not (text[i].isspace() or text[i] == ","):
            return None
        keys.append((frame, value, curve))


# ---- import ------------------------------------------------------------------------------------------


def load_settings(data: Mapping | str | bytes) -> dict:
    """The settings object, or SettingsError with a reason a person can act on."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                                help="a Deforum settings file is one JSON object; check commas and quotes "
                                "near that spot") from None
    if not isinstance(data, Mapping):
        raise SettingsError(f"expected a JSON object of settings, got {type(data).__name__}",
                            help="a Deforum settings file looks like {\"W\": 512, \"H\": 512, …}")
    return dict(data)


def import_settings(data: Mapping | str | bytes, source: str = "settings") -> ImportResult:
    """A Deforum settings file (notebook or A1111 extension) as a checked, canonical .dfm text."""
    return _Importer(load_settings(data), source).run()


class _Importer:
    def __init__(self, data: dict, source: str):
        self.source = source
        self.original = data
        self.data: dict = {}
        self.origin: dict[str, str] = {}  # key used here -> key in the file
        self.mapped: set[str] = set()
        self.warned: set[str] = set()
        self.warnings: list[str] = []
        self.settings: dict[str, str] = {}  # dfm name -> value text
        self.schedules: dict[str, str] = {}
        self.comments: list[str] = []
        self.prompt_lines: list[str] = []
        self.unused_in_mode: list[str] = []
        self.inactive: list[str] = []

    # -- bookkeeping
    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str) -> object:
        return self.data.pop(key, None)

    def file_keys(self, keys: Iterable[str]) -> set[str]:
        """The names these keys have in the file (before renames), for keys the file has."""
        return {o for k in keys if (o := self.origin.get(k, k)) in self.original}

    def map(self, *keys: str) -> None:
        self.mapped |= self.file_keys(keys)

    def warn(self, message: str, keys: Iterable[str] = ()) -> None:
        self.warnings.append(message)
        self.warned |= self.file_keys(keys)

    # -- the passes
    def run(self) -> ImportResult:
        self.rename_deprecated()
        self.scene_settings()
        self.seed()
        self.sampler()
        self.prompts()
        self.init()
        self.steps()
        self.gated_schedules()
        self.special_settings()
        self.dfm_extras()
        self.catalogue_keys()
        self.features()
        self.unknown()
        self.summaries()
        text = self.assemble()
        text = self.check(text)
        return ImportResult(text, self.warnings, self.mapped, self.warned)

    def rename_deprecated(self) -> None:
        for key, value in self.original.items():
            new = RENAMED_KEYS.get(key)
            if key in REMOVED_KEYS:
                self.warn(f"ignored `{key}`: {REMOVED_KEYS[key]}", [key])
            elif new is not None and new in self.original:
                self.warn(f"ignored the deprecated `{key}`: the file also has its new name `{new}`", [key])
            elif new is not None:
                self.data[new] = value
                self.origin[new] = key
            else:
                self.data[key] = value

    # scene: mode, frames, fps, size
    def scene_settings(self) -> None:
        mode_p = cat.BY_NAME["mode"]
        raw_mode = self.take("animation_mode")
        mode = cat.resolve_choice(mode_p, str(raw_mode)) if raw_mode is not None else None
        if raw_mode is not None and mode is None:
            self.warn(f"animation_mode `{raw_mode}` is not a dfm mode; using {mode_p.default}", ["animation_mode"])
        elif raw_mode is not None:
            self.map("animation_mode")
        self.mode = mode or str(mode_p.default)
        self.settings["mode"] = self.mode
        frames = self.number("max_frames", int)
        self.frames = frames if frames and frames >= 1 else int(cat.BY_NAME["frames"].default)
        if frames is not None:
            self.settings["frames"] = str(self.frames)
        fps = self.number("fps", float)
        self.fps = fps if fps and fps > 0 else float(cat.BY_NAME["fps"].default)
        if fps is not None:
            self.settings["fps"] = number_text(self.fps)
        self.size()

    def number(self, key: str, kind: type) -> float | int | None:
        if not self.has(key):
            return None
        raw = self.take(key)
        try:
            value = kind(float(raw))
        except (TypeError, ValueError):
            self.warn(f"`{key}` is {raw!r}, not a number: ignored", [key])
            return None
        self.map(key)
        return value

    def size(self) -> None:
        if not (self.has("W") or self.has("H")):
            return
        p = cat.BY_NAME["size"]
        w0, h0 = (self.number(k, int) for k in ("W", "H"))
        w0, h0 = w0 or p.default[0], h0 or p.default[1]
        w, h = (max(int(p.min), min(int(p.max), d - d % 8)) for d in (w0, h0))
        if (w, h) != (w0, h0):
            self.warn(f"size {w0}x{h0} changed to {w}x{h}: dfm needs multiples of 8 in {p.range_text()}",
                      ["W", "H"])
        self.settings["size"] = f"{w}x{h}"

    def seed(self) -> None:
        raw = self.take("seed") if self.has("seed") else None
        behaviour = self.take("seed_behavior")
        iter_n = self.take("seed_iter_N")
        seed = self.seed_value(raw)
        text = str(seed)
        if behaviour is not None:
            b = str(behaviour).lower()
            if b in cat.SEED_BEHAVIOURS:
                text += f" {b}"
                self.map("seed_behavior")
            else:
                self.warn(f"seed_behavior `{behaviour}` has no dfm equivalent (dfm has "
                          f"{', '.join(cat.SEED_BEHAVIOURS)}); using iter", ["seed_behavior"])
                text += " iter"
                b = "iter"
            if b == "iter" and iter_n is not None and int(float(iter_n)) > 1:
                text += f" {int(float(iter_n))}"
        if iter_n is not None:
            self.map("seed_iter_N")
        self.settings["seed"] = text

    def seed_value(self, raw: object) -> int:
        try:
            seed = int(float(raw)) if raw is not None else None
        except (TypeError, ValueError):
            seed = None
            self.warn(f"seed {raw!r} is not a number", ["seed"])
        if seed is None or seed < 0:
            canon = json.dumps(self.original, sort_keys=True, default=str).encode()
            fixed = int.from_bytes(hashlib.sha256(canon).digest()[:4], "big")
            if raw is not None:
                self.warn(f"seed {raw} (a random seed in Deforum) fixed to {fixed}, derived from the file, so the "
                          "render is reproducible: change it to taste", ["seed"])
            return fixed
        if seed > 2**32 - 1:
            self.warn(f"seed {seed} wrapped to {seed % 2**32} (dfm seeds are 32-bit)", ["seed"])
            seed %= 2**32
        else:
            self.map("seed")
        return seed

    def sampler(self) -> None:
        if not self.has("sampler"):
            return
        raw = self.take("sampler")
        p = cat.BY_NAME["sampler"]
        name = cat.resolve_choice(p, str(raw))
        norm = cat.normalise_choice(str(raw))
        if name is not None:
            self.settings["sampler"] = name
            self.map("sampler")
        elif norm in cat.UNSUPPORTED_SAMPLERS:
            self.warn(f"sampler `{raw}` is not supported: {cat.UNSUPPORTED_SAMPLERS[norm]}; dfm's default "
                      f"{p.default} is used (pick one of {', '.join(p.choices)})", ["sampler"])
        else:
            self.warn(f"sampler `{raw}` is unknown to dfm; dfm's default {p.default} is used", ["sampler"])

    # prompts
    def prompts(self) -> None:
        env = environment(self.frames, self.fps, None, 0)
        pos_key = self.prompt_source()
        positives = self.keyed_texts(pos_key, env) if pos_key else []
        neg_key = next((k for k in ("neg_prompts", "uncond_prompts") if self.has(k)), None)
        negatives = self.keyed_texts(neg_key, env) if neg_key else []
        common_pos = self.common("animation_prompts_positive", "positive_prompts")
        common_neg = self.common("animation_prompts_negative", "negative_prompts").replace("--neg", "").strip()
        split = [(f, *split_neg(t)) for f, t in positives]
        if common_neg and split and all(n.endswith(common_neg) for _, _, n in split):
            self.warn(f"the common negative prompt `{common_neg}` is already in every prompt (a Deforum run file "
                      "stores merged prompts): not added again", [])
            common_neg = ""
        if common_pos and split and all(p.startswith(common_pos) for _, p, _ in split):
            common_pos = ""
        for f, pos, inline in split:
            pos = " ".join(x for x in (common_pos, pos) if x)
            self.prompt_lines.append(f"prompt {f} {quote(pos)}")
            if inline or common_neg or neg_key is None:  # a keyframe without --neg has no negative
                negatives.append((f, " ".join(x for x in (inline, common_neg) if x)))
        if not split:
            self.prompt_lines.append('prompt 0 ""')
            self.warn("the file has no prompts: an empty `prompt 0 \"\"` stands in; write yours", [])
        self.negative_lines(negatives)

    def prompt_source(self) -> str | None:
        present = [k for k in ("prompts", "animation_prompts", "cond_prompts") if self.has(k)]
        if not present:
            return None
        chosen = present[0]
        if "prompts" in present and "animation_prompts" in present:
            chosen = "prompts" if self.mode == "none" else "animation_prompts"
        for other in present:
            if other != chosen:
                self.warn(f"`{other}` not used: `{chosen}` holds the prompts of mode {self.mode}", [other])
                self.take(other)
        return chosen

    def common(self, *keys: str) -> str:
        text = ""
        for k in keys:
            if self.has(k):
                value = self.take(k)
                self.map(k)
                text = text or str(value or "").strip()
        return text

    def keyed_texts(self, key: str, env: Mapping[str, float]) -> list[tuple[int, str]]:
        raw = self.take(key)
        self.map(key)
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip().startswith("{") else raw
            except json.JSONDecodeError:
                self.warn(f"`{key}` looks like JSON but is not valid: read as one prompt", [key])
        if raw is None:
            return []
        if isinstance(raw, str):
            return [(0, raw)]
        if isinstance(raw, list):
            return [(i, str(t)) for i, t in enumerate(raw)]
        if not isinstance(raw, Mapping):
            self.warn(f"`{key}` is neither text nor an object of frame: text; ignored", [key])
            return []
        out: dict[int, str] = {}
        for k, text in raw.items():
            f = _frame_of(str(k), env)
            if f is None or f < 0:
                self.warn(f"{key}: key {k!r} is not a frame; that prompt is left out", [key])
            elif f >= self.frames and self.mode != "none":
                self.warn(f"{key}: key {k!r} is frame {f}, past the last frame {self.frames - 1}; left out "
                          "(Deforum never shows it either)", [key])
            else:
                if f in out:
                    self.warn(f"{key}: two prompts at frame {f}; the last one wins (as in Deforum)", [key])
                out[f] = str(text)
        return sorted(out.items())

    def negative_lines(self, negatives: list[tuple[int, str]]) -> None:
        by_frame = dict(sorted(negatives))
        previous = None
        lines = []
        for f, text in by_frame.items():
            if text != previous:
                lines.append((f, text))
            previous = text
        if len(lines) == 1 and lines[0][0] == 0:
            if lines[0][1]:
                self.prompt_lines.append(f"negative {quote(lines[0][1])}")
            return
        self.prompt_lines += [f"negative {f} {quote(t)}" for f, t in lines]

    # init image and frame 0
    def init(self) -> None:
        """use_init + init_image + strength (the init's strength, not the schedule)."""
        use_init = _truthy(self.take("use_init")) if self.has("use_init") else False
        self.map("use_init")
        image, strength = self.take("init_image"), self.take("strength")
        if use_init and image:
            self.settings["init_image"] = quote(str(image))
            self.map("init_image")
            if strength is not None:
                self.settings["init_strength"] = number_text(min(1.0, max(0.0, float(strength))))
                self.map("strength")
        elif image:
            self.inactive.append("init_image (use_init is off)")
            self.warned.add("init_image")
        if strength is not None and not (use_init and image):
            self.map("strength")  # the init image's strength: no effect without one, in Deforum too
        if image is None and "init_image" in self.original:
            self.map("init_image")
        if self.has("strength_0_no_init"):
            if _truthy(self.take("strength_0_no_init")) or use_init:
                self.map("strength_0_no_init")
            else:
                self.warn("strength_0_no_init is off: dfm always renders frame 0 from noise when there is no "
                          "init image", ["strength_0_no_init"])

    def steps(self) -> None:
        scheduled = _truthy(self.take("enable_steps_scheduling")) if self.has("enable_steps_scheduling") else False
        self.map("enable_steps_scheduling")
        if scheduled and self.has("steps_schedule"):
            self.schedule("steps", "steps_schedule", self.take("steps_schedule"))
            if self.has("steps"):
                self.take("steps")
                self.map("steps")  # overridden by the schedule, in Deforum too
        elif self.has("steps"):
            self.schedule("steps", "steps", self.take("steps"))

    def gated_schedules(self) -> None:
        """Keys whose switch is off: Deforum ignores them, so does the import (noted if not default)."""
        for switch, on, keys in GATES:
            value = self.data.get(switch, self.original.get(switch))
            enabled = str(value).lower() == on if isinstance(on, str) else _truthy(value)
            if enabled:
                continue
            for key in keys:
                if not self.has(key):
                    continue
                raw = self.take(key)
                p = cat.lookup(key)
                if p is not None and p.kind is Kind.SCHEDULE and _is_constant(raw, float(p.default)):
                    self.map(key)
                elif raw in (None, ""):
                    self.map(key)
                else:
                    self.inactive.append(f"{key} ({switch} is {value if value is not None else 'unset'})")
                    self.warned.add(self.origin.get(key, key))
        for switch, _, _ in GATES:
            if self.has(switch) and cat.lookup(switch) is None:
                self.take(switch)
                self.map(switch)
        if self.has("seed_schedule"):
            self.take("seed_schedule")
            self.warn("seed_behavior `schedule` is not supported: dfm has no seed schedule (the seeds follow "
                      "`iter` from the start seed)", ["seed_schedule"])

    def special_settings(self) -> None:
        for key in ("sd_model_name", "model_checkpoint", "sd_model"):
            if self.has(key):
                name = str(self.take(key))
                if "/" in name and not name.endswith((".ckpt", ".safetensors", ".pt", ".bin")):
                    self.settings["model"] = quote(name)
                    self.map(key)
                else:
                    self.comments.append(f"# model {quote(name)}   # the checkpoint the file was made with")
                    self.warn(f"{key} `{name}` is a checkpoint name, not a path: set `model` to the file or a "
                              "hub id (left as a comment)", [key])
        if self.has("depth_algorithm"):
            algo = str(self.take("depth_algorithm"))
            model = {v: k for k, v in A1111_DEPTH.items()}.get(algo)
            if self.mode != "3d":
                self.unused_in_mode.append("depth_algorithm")
            elif model:
                self.settings["depth_model"] = quote(model)
                self.map("depth_algorithm")
            else:
                self.warn(f"depth_algorithm `{algo}` has no dfm model; dfm's default "
                          f"{cat.BY_NAME['depth_model'].default} is used", ["depth_algorithm"])
        if self.has("skip_video_creation"):
            self.settings["save_video"] = "off" if _truthy(self.take("skip_video_creation")) else "on"
            self.map("skip_video_creation")
        if self.has("noise_type"):
            kind = str(self.take("noise_type"))
            if kind.lower() == "uniform":
                self.map("noise_type")
            else:
                self.warn(f"noise_type `{kind}` approximated by dfm's Gaussian noise (Deforum's 'uniform')",
                          ["noise_type"])
        if self.has("color_coherence"):
            raw = self.take("color_coherence")
            choice = cat.resolve_choice(cat.BY_NAME["color_coherence"], str(raw))
            if self.mode not in cat.BY_NAME["color_coherence"].modes:
                self.unused_in_mode.append("color_coherence")
            elif choice is None:
                self.settings["color_coherence"] = "lab"
                self.warn(f"color_coherence `{raw}` has no dfm equivalent: approximated by lab (match the first "
                          "frame)", ["color_coherence"])
            else:
                self.settings["color_coherence"] = choice
                self.map("color_coherence")

    def dfm_extras(self) -> None:
        """Settings dfm wrote for itself (see `export_settings`): copied back verbatim."""
        if not self.has("dfm"):
            return
        extra = self.take("dfm")
        self.map("dfm")
        values = extra.get("settings", {}) if isinstance(extra, Mapping) else {}
        for name, text in values.items():
            p = cat.lookup(name)
            if p is None:
                self.warn(f"dfm: unknown setting `{name}` ignored", ["dfm"])
            else:
                (self.schedules if p.kind is Kind.SCHEDULE else self.settings)[p.name] = str(text)

    def catalogue_keys(self) -> None:
        for key in list(self.data):
            p = cat.lookup(key)
            if p is None or p.kind is Kind.PROMPT or key in ("prompt",):
                continue
            value = self.take(key)
            if self.mode not in p.modes:
                if not (p.kind is Kind.SCHEDULE and _is_constant(value, _default(p))):
                    self.unused_in_mode.append(key)
                else:
                    self.map(key)
                continue
            if p.kind is Kind.SCHEDULE:
                self.schedule(p.name, key, value)
            else:
                self.setting(p, key, value)

    def setting(self, p: Param, key: str, value: object) -> None:
        text = _setting_text(p, value)
        if text is None:
            self.warn(f"`{key}` = {value!r} is not a valid {p.name}; dfm's default is used", [key])
            return
        if p.name in self.settings and key != p.name:
            self.warn(f"`{key}` repeats {p.name}; the first value is kept", [key])
            return
        self.settings[p.name] = text
        self.map(key)

    def schedule(self, name: str, key: str, value: object) -> None:
        text = self.schedule_text(name, key, value)
        if text is not None:
            if name in self.schedules:
                self.warn(f"`{key}` repeats {name}; the first schedule is kept", [key])
                return
            self.schedules[name] = text
            self.map(key)

    def schedule_text(self, name: str, key: str, value: object) -> str | None:
        if isinstance(value, bool) or value is None:
            self.warn(f"`{key}` = {value!r} is not a schedule; left out", [key])
            return None
        if isinstance(value, (int, float)):
            return number_text(value)
        text = " ".join(str(value).split())
        keys = split_deforum_keys(text)
        if not keys:
            if _expr(text) is not None:
                self.warn(f"`{key}` = {text!r} has no frame key (Deforum would fail on it): read as the constant "
                          f"{text}", [key])
                return text
            self.comments.append(f"# {name} {text}   # not readable as a schedule")
            self.warn(f"`{key}` = {text!r} is not a schedule dfm can read: left as a comment", [key])
            return None
        return self.rekey(name, key, text, keys)

    def rekey(self, name: str, key: str, text: str, keys: list[tuple[str, str, str]]) -> str | None:
        """The schedule with every key at a whole frame inside the scene (`"max_f-2"` -> 118)."""
        env = environment(self.frames, self.fps, None, 0)
        out, changed = [], False
        for frame_text, value, curve in keys:
            f = int(frame_text) if frame_text.isdigit() else _frame_of(frame_text, env)
            changed |= not frame_text.isdigit()
            if f is None or f < 0:
                self.warn(f"`{key}`: key {frame_text!r} is not a frame; that key is left out", [key])
                changed = True
            elif f >= self.frames:
                self.warn(f"`{key}`: key at frame {f} is past the last frame {self.frames - 1}; left out "
                          "(Deforum ignores it too)", [key])
                changed = True
            else:
                out.append(f"{f}:({value.strip()}){' ' + curve if curve else ''}")
        if not out:
            self.warn(f"`{key}`: no key inside the scene; dfm's default is used", [key])
            return None
        return ", ".join(out) if changed else text

    def features(self) -> None:
        for feat in FEATURES:
            keys = [k for k in self.data if re.fullmatch(feat.pattern, k)]
            if not keys:
                continue
            rest, in_use = [], []
            for k in keys:
                value = self.take(k)
                if k in feat.off and value in feat.off[k]:
                    self.map(k)
                else:
                    rest.append(k)
                    if k in feat.off:
                        in_use.append(f"{k} = {value!r}")
            if feat.label == "ControlNet":
                in_use = [f"cn_{m.group(1)}" for k in keys if (m := re.fullmatch(r"cn_(\d+)_enabled", k))
                          and _truthy(self.original.get(self.origin.get(k, k)))]
            if not rest:
                continue
            noun = "key" if len(rest) == 1 else "keys"
            note = (f" — IN USE in this file ({', '.join(in_use)}): the render will differ" if in_use
                    else " (switched off in this file: nothing is lost)" if feat.off else "")
            self.warn(f"ignored {len(rest)} {feat.label} {noun} ({_group_names(rest)}): {feat.reason}{note}", rest)

    def unknown(self) -> None:
        keys = sorted(self.data)
        if keys:
            noun = "key" if len(keys) == 1 else "keys"
            self.warn(f"ignored {len(keys)} unknown {noun}: {', '.join(keys)}", keys)
            self.data.clear()

    def summaries(self) -> None:
        if self.unused_in_mode:
            keys = self.unused_in_mode
            self.warn(f"left out {len(keys)} keys not used in mode {self.mode}: {', '.join(keys)}", keys)
        if self.inactive:
            self.warnings.append("left out (switched off in the file, so Deforum ignores them too): "
                                 + "; ".join(self.inactive))

    # -- text
    def assemble(self) -> str:
        lines = [f"# imported from {self.source} by `dfm import`: review the warnings it printed",
                 f"dfm {cat.FORMAT_VERSION}", ""]
        lines += [f"{p.name} {self.settings[p.name]}" for p in cat.SETTINGS if p.name in self.settings]
        lines += self.comments
        lines += [""] + self.prompt_lines + [""]
        lines += [f"{p.name} {self.schedules[p.name]}" for p in cat.SCHEDULES if p.name in self.schedules]
        return "\n".join(lines) + "\n"

    def check(self, text: str) -> str:
        """Comment out any statement dfm rejects (with a warning), until the scene checks clean."""
        from .compile import compile_source

        for _ in range(20):
            errors = [d for d in compile_source(text, build_table=False).diagnostics if d.is_error]
            lines = text.split("\n")
            bad = sorted({d.span.line for d in errors if 1 <= d.span.line <= len(lines)
                          and not lines[d.span.line - 1].startswith(("dfm ", "#"))})
            if not errors or not bad:
                break
            for line in bad:
                why = next(d.message for d in errors if d.span.line == line)
                name = lines[line - 1].split(" ", 1)[0]
                self.warn(f"`{name}` could not be imported ({why}): left as a comment", [])
                self.mapped -= {k for k in self.mapped if cat.lookup(k) is not None
                                and cat.lookup(k).name == name}
                self.warned.update(k for k in self.original if cat.lookup(k) is not None
                                   and cat.lookup(k).name == name)
                lines[line - 1] = f"# {lines[line - 1]}"
            text = "\n".join(lines)
        return format_dfm(text)


def format_dfm(text: str) -> str:
    from ..dsl.formatter import format_source

    return format_source(text)


def _default(p: Param) -> float:
    return float(p.default) if isinstance(p.default, (int, float)) else math.nan


def _is_constant(raw: object, value: float) -> bool:
    """Whether a Deforum schedule (or number) is the constant `value`."""
    if isinstance(raw, bool):
        return False
    if isinstance(raw, (int, float)):
        return float(raw) == value
    keys = split_deforum_keys(str(raw)) if isinstance(raw, str) else None
    if not keys:
        return False
    texts = {v.strip() for _, v, _ in keys}
    try:
        return len(texts) == 1 and float(texts.pop()) == value
    except ValueError:
        return False


def _setting_text(p: Param, value: object) -> str | None:
    """A static setting's value written in dfm, or None if it is not one."""
    try:
        if p.type == "bool":
            return "on" if _truthy(value) else "off"
        if p.type == "enum":
            return cat.resolve_choice(p, str(value))
        if p.type in ("path", "string", "model"):
            return quote(str(value)) if value not in (None, "") else None
        if p.type in ("int", "float"):
            x = float(value)
            if p.type == "int":
                x = float(int(x))
            return number_text(x) if p.in_range(x) else None
    except (TypeError, ValueError):
        return None
    return None


# ---- export --------------------------------------------------------------------------------------------

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
    "animation_prompts_negative": "", "noise_type": "uniform", "enable_subseed_scheduling": False,
    "enable_sampler_scheduling": False, "enable_checkpoint_scheduling": False,
    "enable_clipskip_scheduling": False, "enable_noise_multiplier_scheduling": False,
    "enable_ddim_eta_scheduling": False, "enable_ancestral_eta_scheduling": False, "use_mask": False,
    "use_noise_mask": False, "hybrid_composite": "None", "hybrid_motion": "None",
    "optical_flow_cadence": "None", "optical_flow_redo_generation": "None", "diffusion_redo": "0",
    "use_looper": False, "parseq_manifest": "", "resume_from_timestring": False,
}


def a1111_key(p: Param) -> str:
    """The extension's settings key of a schedule (the catalogue's `deforum` column)."""
    return p.deforum or p.name


def deforum_expr(e: ir.Expr, env: Mapping[str, float]) -> tuple[str | None, str]:
    """The expression in the A1111 extension's numexpr syntax, or (None, why not).

    Scene constants (pi, e, fps, bpm, s, max_frames) are written as their values; t and max_f stay."""
    from ..dsl.formatter import format_expr

    why = _not_deforum(e)
    return (None, why) if why else (format_expr(_substitute(e, env)), "")


def _not_deforum(e: ir.Expr) -> str:
    """Why the A1111 extension cannot read this expression ("" when it can)."""
    if isinstance(e, ir.Unary):
        return f"the operator `{e.op}`" if e.op not in "+-" else _not_deforum(e.operand)
    if isinstance(e, ir.Binary):
        if e.op not in DEFORUM_OPERATORS:
            return f"the operator `{e.op}`"
        return _not_deforum(e.left) or _not_deforum(e.right)
    if isinstance(e, ir.Call):
        if e.func not in DEFORUM_FUNCTIONS:
            comma = e.func in FUNCTIONS and FUNCTIONS[e.func][1] > 1
            return f"`{e.func}` ({'a comma, which the extension splits on' if comma else 'not in Deforum'})"
        return next((w for w in map(_not_deforum, e.args) if w), "")
    return ""


def _substitute(e: ir.Expr, env: Mapping[str, float]) -> ir.Expr:
    """The expression with every scene constant replaced by its value."""
    if isinstance(e, ir.Variable) and e.name not in DEFORUM_VARIABLES:
        return ir.Number(env[e.name], number_text(env[e.name]))
    if isinstance(e, ir.Unary):
        return ir.Unary(e.op, _substitute(e.operand, env))
    if isinstance(e, ir.Binary):
        return ir.Binary(e.op, _substitute(e.left, env), _substitute(e.right, env))
    if isinstance(e, ir.Call):
        return ir.Call(e.func, tuple(_substitute(a, env) for a in e.args))
    return e


def _number_key(e: ir.Expr) -> str:
    if isinstance(e, ir.Unary):
        return e.op + e.operand.text
    return e.text


def number_keys(values: np.ndarray, start: int, stop: int) -> list[tuple[int, str]]:
    """Number keys reproducing values[start:stop] under linear interpolation (collinear frames dropped)."""
    seg = np.asarray(values[start:stop], dtype=np.float64)
    d2 = np.abs(seg[2:] - 2 * seg[1:-1] + seg[:-2])
    keep = {0, len(seg) - 1, *(np.nonzero(d2 > 1e-13 * np.maximum(1.0, np.abs(seg[1:-1])))[0] + 1).tolist()}
    frames = np.arange(len(seg))
    for _ in range(8):  # collinearity tests can drift over long runs: check the reconstruction
        idx = sorted(keep)
        bad = np.nonzero(np.abs(np.interp(frames, idx, seg[idx]) - seg) > 1e-11 * np.maximum(1.0, np.abs(seg)))[0]
        if not len(bad):
            break
        keep.update(bad.tolist())
    return [(start + i, number_text(seg[i])) for i in sorted(keep)]


def deforum_schedule(keys: list[ResolvedKey], values: np.ndarray, env: Mapping[str, float]
                     ) -> tuple[str, list[str]]:
    """A Deforum schedule string giving `values`, and why any part of it had to be written per frame."""
    frames = len(values)
    keys = [k for k in keys if k.frame < frames]
    out: list[tuple[int, str]] = []
    reasons: list[str] = []
    if not keys or keys[0].frame > 0:
        out.append((0, number_text(values[0])))
    for i, k in enumerate(keys):
        stop = keys[i + 1].frame if i + 1 < len(keys) else frames
        last = i + 1 == len(keys)
        if k.is_number:
            text = _number_key(k.value)
            if k.curve == "linear" or last:
                out.append((k.frame, text))
            elif k.curve == "step":
                out.append((k.frame, text))
                if stop - 1 > k.frame:
                    out.append((stop - 1, text))
            else:
                out += number_keys(values, k.frame, stop)
                reasons.append(f"the {k.curve} curve from frame {k.frame}")
            continue
        text, why = deforum_expr(k.value, env)
        if text is not None:
            out.append((k.frame, text))
        else:
            out += number_keys(values, k.frame, stop)
            reasons.append(f"{why} at frame {k.frame}")
    return ", ".join(f"{f}: ({v})" for f, v in out), reasons


def export_settings(result) -> ExportResult:
    """The A1111 extension's settings for a compiled scene (a `CompileResult` with a table)."""
    if result.table is None or result.settings is None:
        raise ValueError("export_settings needs a scene compiled without errors")
    return _Exporter(result).run()


class _Exporter:
    def __init__(self, result):
        self.r = result
        self.s = result.settings
        self.mode = self.s.mode
        self.out: dict = {}
        self.extras: dict[str, str] = {}
        self.warnings: list[str] = []

    def run(self) -> ExportResult:
        self.scene()
        self.prompts()
        self.schedules()
        self.settings()
        self.out.update(NEUTRAL_SETTINGS)
        if self.extras:
            self.out["dfm"] = {"format_version": cat.FORMAT_VERSION, "settings": self.extras}
        return ExportResult(self.out, self.warnings)

    def scene(self) -> None:
        s = self.s
        w, h = s.size
        self.out.update({
            "W": w, "H": h, "seed": int(s.seed), "sampler": A1111_SAMPLERS[s.sampler],
            "steps": int(self.r.values["steps"][0]), "seed_behavior": s.seed_behavior,
            "seed_iter_N": int(s.seed_iter_n), "animation_mode": A1111_MODES[self.mode],
            "max_frames": int(s.frames), "fps": _plain(s.fps),
        })
        init = s.init_image
        self.out["use_init"] = bool(init)
        self.out["init_image"] = init or ""
        self.out["strength_0_no_init"] = True
        if init:
            strength = s.init_strength if s.init_strength is not None else float(self.r.values["strength"][0])
            self.out["strength"] = _plain(strength)
        self.extras["model"] = quote(s.model)
        if s.model_sha256:
            self.extras["model"] += f' sha256 "{s.model_sha256}"'
        self.warnings.append(f"model: the A1111 extension renders with the checkpoint chosen in the webui, not "
                             f"{s.model}")

    def prompts(self) -> None:
        table = self.r.table
        pos, neg = table["prompt"], table["negative_prompt"]
        if self.mode in ("none", "interpolation"):
            entries = self.keyed_prompts()
        else:
            entries = {}
            for i in range(len(pos)):
                if i == 0 or pos[i] != pos[i - 1] or neg[i] != neg[i - 1]:
                    entries[str(i)] = _join_neg(str(pos[i]), str(neg[i]))
        self.out["prompts"] = entries
        if self.s.prompt_crossfade:
            self.extras["prompt_crossfade"] = str(self.s.prompt_crossfade)
            self.warnings.append(f"prompt_crossfade {self.s.prompt_crossfade}: Deforum cuts prompts hard "
                                 "(kept for dfm under the `dfm` key)")

    def keyed_prompts(self) -> dict[str, str]:
        """Stills and interpolation rows are not frames: write the scene's own keys."""
        from .lower import forward_fill, join_negatives

        last = max([f for f, _ in self.r.prompts] + [0]) + 1
        negs = forward_fill(self.r.negatives, last)
        out = {}
        for f, text in self.r.prompts:
            p, inline = split_neg(text)
            out[str(f)] = _join_neg(p, join_negatives(str(negs[f]), inline))
        return out

    def schedules(self) -> None:
        env = environment(self.s.frames, self.s.fps, self.s.bpm, self.s.seed)
        for p in cat.SCHEDULES:
            if self.mode not in p.modes:
                continue
            values = self.r.values[p.name]
            keys = self.r.schedules.get(p.name) or [ResolvedKey(0, ir.Number(float(values[0]),
                                                                             number_text(values[0])))]
            text, reasons = deforum_schedule(keys, values, env)
            if not self.same(text, values):
                text = ", ".join(f"{f}: ({v})" for f, v in number_keys(values, 0, len(values)))
                reasons = ["values that did not read back exactly"]
            if reasons:
                self.warnings.append(f"{p.name}: written as per-frame keys for {'; '.join(reasons)}")
            self.out[a1111_key(p)] = text
        self.out["enable_steps_scheduling"] = True
        if self.mode in cat.BY_NAME["perspective_flip"].modes:
            self.out["enable_perspective_flip"] = bool(self.s.perspective_flip)

    def same(self, text: str, values: np.ndarray) -> bool:
        """Read the string back with dfm's Deforum-exact evaluator: equal within 1e-9?"""
        from .compile import schedule_values

        back, _ = schedule_values(text, len(values), fps=self.s.fps, bpm=self.s.bpm, seed=self.s.seed)
        return back is not None and bool(np.allclose(back, values, rtol=0, atol=1e-9))

    def settings(self) -> None:
        s = self.s
        for p in cat.SETTINGS:
            if p.name in ("mode", "frames", "fps", "sampler", "seed", "seed_behavior", "seed_iter_n",
                          "init_image", "model", "size", "prompt_crossfade"):
                continue
            value = s[p.name]
            if self.mode not in p.modes or value is None:
                continue
            self.setting(p, value)

    def setting(self, p: Param, value: object) -> None:
        special = {
            "cadence": lambda v: {"diffusion_cadence": str(int(v))},
            "color_coherence": lambda v: {"color_coherence": A1111_COLOR[v]},
            "save_video": lambda v: {"skip_video_creation": not v},
            "video_mask_path": lambda v: {"use_mask_video": True, "video_mask_path": v},
            "depth_model": lambda v: {"depth_algorithm": A1111_DEPTH[v]} if v in A1111_DEPTH else None,
        }
        if p.name in special:
            mapped = special[p.name](value)
            if mapped is not None:
                self.out.update(mapped)
                return
        elif p.deforum and p.name not in ("interpolate_key_frames", "interpolate_x_frames"):
            self.out[p.deforum] = _plain(value)
            return
        if value == p.default or p.name in ("duration",):
            return
        self.extras[p.name] = _dfm_value(p, value)
        if p.name not in ("bpm", "interpolate_key_frames", "interpolate_x_frames", "init_strength"):
            self.warnings.append(f"{p.name}: the A1111 extension has no such setting (kept for dfm under the "
                                 "`dfm` key)")


def _plain(v: object) -> object:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _dfm_value(p: Param, v: object) -> str:
    if p.type == "bool":
        return "on" if v else "off"
    if p.type in ("path", "string", "model"):
        return quote(str(v))
    if isinstance(v, (int, float)):
        return number_text(v)
    return str(v)


def _join_neg(pos: str, neg: str) -> str:
    return f"{pos} --neg {neg}" if neg else pos


__all__ = ["SettingsError", "ImportResult", "ExportResult", "import_settings", "export_settings",
           "load_settings", "deforum_schedule", "deforum_expr", "split_deforum_keys", "number_keys",
           "A1111_SAMPLERS"]
