"""The parameter catalogue: every statement a scene may hold, defined once.

One row per parameter: its name, Deforum aliases, kind (schedule / static setting / prompt), type,
unit, default, valid range, choices and the modes that use it. The checker, the compiler, the
formatter, the Deforum importer/exporter, the Parseq exporter and docs/language.md all read this
table; adding a parameter is adding a row.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum

from ..contract import controlnet as cn
from ..contract import hybrid
from ..contract.modes import NAMES, names_where
from ..contract.reads import ColumnRead, Effect, Read
from ..contract.table import DERIVED, ColumnType


class Kind(str, Enum):
    SCHEDULE = "schedule"  # a value per frame: a constant, an expression of t, or keyframes
    SETTING = "setting"  # one value for the whole scene
    PROMPT = "prompt"  # text keyed at frames


MAX_FRAMES = 1_000_000  # 9 hours at 30 fps; beyond this a scene is a typo, not a film
MODES = NAMES  # contract/modes.py: each mode's properties; the sets below are named by them
ALL = frozenset(MODES)
ANIMATED = names_where("animated")
MOTION = names_where("camera")  # the modes with a camera (and cadence)


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    type: str  # float | int | bool | enum | size | time | string | path | model | seed
    default: object
    doc: str
    group: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # the minimum itself is not allowed
    max_open: bool = False
    excluded: tuple[float, ...] = ()  # values inside the range that cannot render (a zoom of 0)
    # a value below this renders, but not as its name suggests (Deforum renders it too): a warning saying what
    # it does (`warn_why`), never a refusal (DFM408)
    warn_below: float | None = None
    warn_why: str = ""
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    choice_aliases: dict[str, str] = field(default_factory=dict)
    # each choice as Deforum's UI writes it ("Optical Flow"), for the export; a choice without one is written as is
    labels: dict[str, str] = field(default_factory=dict)
    # choices (normalised) or values (as written) users bring that have no faithful equivalent -> why, for the help
    refused: dict[str, str] = field(default_factory=dict)
    auto: bool = False  # `NAME auto` reads the value from the scene's audio track
    must_exist: bool = True  # a path the render reads (warned about when missing); False for outputs
    modes: frozenset = ALL
    aliases: tuple[str, ...] = ()
    deforum: str | None = None  # the A1111-extension settings key; None: Deforum has no such setting
    parseq: str | None = None  # Parseq's field name, for schedules Parseq can carry; None: Parseq has none
    # how exporters treat it: "value" (written under its key; with no key, an `unsupported` warning when
    # the scene sets it) or "local" (about dfm's own render, e.g. output_dir: never exported, no warning)
    export: str = "value"
    # Deforum's Parseq adapter reads this field's per-frame change `X_delta` (parseq_use_deltas): "add", or
    # "multiply" for zoom (a delta of 1 is no change); None: it reads the value itself
    parseq_delta: str | None = None
    # a schedule: which rows the renderer reads its column at (contract/reads.py), in the row's `modes`, while
    # the bool setting `read_if` is on; None: every row (a new column counts as read until its row says)
    read: Read | None = None
    read_if: str | None = None
    # a setting: what a change of it can change (every frame, the video file only, or nothing by itself)
    effect: Effect = Effect.FRAMES
    # the derived columns (contract/table.py DERIVED) the compiler computes from it, besides a schedule's own
    # column: `dfm diff` groups their changes under the statement that made them
    feeds: tuple[str, ...] = ()
    moves_rows: bool = False  # a setting that moves or makes rows: every column may change through it
    # the ControlNet unit (1..5) the row belongs to: its setting or column exists only while the unit is
    # active (contract/controlnet.py), so a scene without ControlNet has none of the 70 unit rows
    cn_unit: int | None = None

    @property
    def column_type(self) -> ColumnType:
        """The FrameTable type of this parameter's column (schedules) or value."""
        return _COLUMN_TYPES.get(self.type, ColumnType.TEXT)

    def range_text(self) -> str:
        text = self._bounds_text()
        if self.excluded:
            text += (", " if text else "") + ", ".join(f"≠ {_fmt(v)}" for v in self.excluded)
        return text

    def _bounds_text(self) -> str:
        if self.min is None and self.max is None:
            return ""
        lo = "" if self.min is None else ("(" if self.min_open else "[") + _fmt(self.min)
        hi = "" if self.max is None else _fmt(self.max) + (")" if self.max_open else "]")
        if self.min is None:
            return f"≤ {hi[:-1]}" if not self.max_open else f"< {hi[:-1]}"
        if self.max is None:
            return f"> {_fmt(self.min)}" if self.min_open else f"≥ {_fmt(self.min)}"
        return f"{lo} .. {hi}"

    def in_range(self, v: float) -> bool:
        if self.min is not None and (v < self.min or (self.min_open and v == self.min)):
            return False
        if self.max is not None and (v > self.max or (self.max_open and v == self.max)):
            return False
        return v not in self.excluded


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


_COLUMN_TYPES = {"float": ColumnType.FLOAT, "int": ColumnType.INT, "bool": ColumnType.BOOL}


def _sched(name, default, doc, group, unit="", modes=ALL, aliases=(), *, deforum: str | None, parseq: str | None,
           type="float", **kw) -> Param:
    # every schedule row names its Deforum key and Parseq field, or None where that dialect has none
    return Param(name, Kind.SCHEDULE, type, default, doc, group, unit=unit, modes=modes,
                 aliases=(f"{name}_schedule", *aliases), deforum=deforum, parseq=parseq, **kw)


def _set(name, type, default, doc, group, modes=ALL, aliases=(), deforum=None, **kw) -> Param:
    return Param(name, Kind.SETTING, type, default, doc, group, modes=modes, aliases=aliases,
                 deforum=deforum, **kw)


# ---- samplers ------------------------------------------------------------------------------------

SAMPLERS = (
    "euler", "euler_a", "klms", "klms_karras", "heun", "dpm2", "dpm2_karras", "dpm2_a", "dpm2_a_karras",
    "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_2m_sde", "dpmpp_2m_sde_karras", "ddim", "plms", "unipc",
    "euler_karras", "euler_exponential", "heun_karras", "dpmpp_2m_exponential", "dpmpp_2m_sde_exponential",
    "lcm", "euler_trailing", "euler_a_trailing", "dpmpp_2m_trailing", "dpmpp_2m_sde_trailing",  # few-step models
    "flow_euler",  # rectified-flow models (SD3 / SD3.5, Flux): diffusers' FlowMatchEulerDiscreteScheduler
)
# the samplers of rectified-flow families (contract/families.py FLOW_BASES), and only of them (compiler/flow_family.py)
FLOW_SAMPLERS = frozenset({"flow_euler"})
SAMPLER_ALIASES = {
    "euler_ancestral": "euler_a", "k_euler_a": "euler_a", "k_euler_ancestral": "euler_a", "k_euler": "euler",
    "lms": "klms", "k_lms": "klms", "lms_karras": "klms_karras", "k_heun": "heun",
    "dpm2_ancestral": "dpm2_a", "k_dpm_2": "dpm2", "k_dpm_2_a": "dpm2_a", "dpm_2": "dpm2", "dpm_2_a": "dpm2_a",
    "dpm2_ancestral_karras": "dpm2_a_karras", "dpmpp2m": "dpmpp_2m", "k_dpmpp_2m": "dpmpp_2m",
    "dpmpp_2m_karras_": "dpmpp_2m_karras", "uni_pc": "unipc", "pndm": "plms",
}
# Names users bring from Deforum/A1111 that have no faithful diffusers scheduler: an error, never a
# silent substitute.
UNSUPPORTED_SAMPLERS = {
    "dpm_fast": "DPM fast has no diffusers scheduler",
    "dpm_adaptive": "DPM adaptive has no diffusers scheduler (its step count is adaptive)",
    "dpmpp_2s_a": "DPM++ 2S a has no diffusers scheduler",
    "dpmpp_2s_a_karras": "DPM++ 2S a Karras has no diffusers scheduler",
    "dpmpp_sde": "DPM++ SDE needs torchsde and seeds its noise outside the frame's generator",
    "dpmpp_sde_karras": "DPM++ SDE Karras needs torchsde and seeds its noise outside the frame's generator",
    "dpmpp_3m_sde": "DPM++ 3M SDE has no diffusers equivalent",
}

# The samplers that evaluate the UNet twice per step (diffusers `scheduler.order == 2`; a test pins this to
# runtime/samplers.py). A1111 marks them `second_order` and builds prompt-editing schedules over
# `steps × 2` (processing.py `step_multiplier`), because its denoiser counts every model call: dfm's
# schedules are written over the same count so `[a:b:0.5]` switches where A1111's does.
SECOND_ORDER_SAMPLERS = frozenset({"heun", "heun_karras", "dpm2", "dpm2_karras", "dpm2_a", "dpm2_a_karras"})
# PLMS (diffusers PNDM without PRK steps) repeats one timestep as a warm-up: one more UNet call per
# denoise of 2 or more steps.
WARMUP_SAMPLERS = frozenset({"plms"})


def step_multiplier(sampler: str) -> int:
    """A1111's prompt-schedule steps per sampler step: 2 for a second-order sampler, else 1."""
    return 2 if sampler in SECOND_ORDER_SAMPLERS else 1


def normalise_choice(text: str) -> str:
    """'DPM++ 2M Karras' -> 'dpmpp_2m_karras', 'Match Frame 0 LAB' -> 'match_frame_0_lab'."""
    t = text.strip().lower().replace("++", "pp")
    return re.sub(r"[^a-z0-9]+", "_", t).strip("_")


SEED_BEHAVIOURS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
SEEDED_MODES = names_where("seeded_by_schedule")  # the modes whose diffusions can follow a seed_schedule

# derived columns several rows feed (`feeds`)
PROMPT_COLUMNS = ("prompt", "prompt_from", "prompt_blend", "prompt_pieces", "prompt_from_pieces")
NEGATIVE_COLUMNS = ("negative_prompt", "negative_prompt_from", "negative_blend", "negative_prompt_pieces",
                    "negative_prompt_from_pieces")
STEPS_RUN = ("effective_steps", "unet_evals")
# a ` --neg ` part of a prompt goes to the negative prompt; `AND` parts and `<lora:…>` tags are counted
PROMPTS_FED = (*PROMPT_COLUMNS, *NEGATIVE_COLUMNS, "unet_evals", "lora_weights")
CADENCE_PLAN = tuple(name for name, (_, read) in DERIVED.items() if read.when is Read.EVERY)

# ---- the table -------------------------------------------------------------------------------------

PARAMS: tuple[Param, ...] = (
    # scene
    _set("mode", "enum", "2d", "Animation mode: stills, 2D camera, 3D depth-warped camera, video input, "
         "or prompt interpolation.", "scene", choices=MODES, aliases=("animation_mode",), deforum="animation_mode",
         choice_aliases={"video_input": "video", "2d": "2d", "3d": "3d", "none": "none"}, moves_rows=True),
    _set("frames", "int", 120, "Number of frames to render.", "scene", min=1, max=MAX_FRAMES, aliases=("max_frames",),
         deforum="max_frames", effect=Effect.NONE, moves_rows=True),
    _set("duration", "time", None, "Length of the scene in seconds (or beats); sets frames = round(duration × "
         "fps). Use either frames or duration. `duration auto` takes the `audio` track's length (from its "
         "offset).", "scene", min=0, min_open=True, unit="s", auto=True, effect=Effect.NONE, moves_rows=True),
    _set("fps", "float", 15, "Frames per second of the output video; converts seconds to frames.", "scene",
         min=0, min_open=True, max=240, unit="frames/s", deforum="fps", effect=Effect.VIDEO, moves_rows=True),
    _set("bpm", "float", None, "Beats per minute; needed when times are written in beats (`8b`). `bpm auto` detects it "
         "from the `audio` track.", "scene",
         min=0, min_open=True, max=1000, unit="beats/min", auto=True, effect=Effect.NONE, moves_rows=True),
    _set("audio", "path", None, "A soundtrack (wav, flac, mp3, ogg, m4a), optionally `from 12s` into it: its "
         "per-frame features (`onset`, `rms`, `beat`, `beat_phase`, `low`, `mid`, `high`) become expression "
         "variables and table columns, `bpm auto` and `duration auto` read it, and video.mp4 carries it.",
         "scene", aliases=("soundtrack", "soundtrack_path"), effect=Effect.VIDEO),
    _set("audio_offset", "float", 0.0, "Where in the audio track the scene starts (`audio \"song.mp3\" from 12s` "
         "sets it).", "scene", min=0, unit="s", effect=Effect.VIDEO),
    _set("size", "size", (512, 512), "Output width × height in pixels, each a multiple of 8.", "scene",
         min=64, max=4096, multiple_of=8),
    # generation
    _set("model", "model", "stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.x/2.x/SDXL model "
         "(Turbo, Lightning and LCM ones too), or Flux.1 (dev, schnell) or SD3/SD3.5: a hub id, a local "
         "diffusers folder, or a .safetensors file; "
         "optionally followed by `sha256 \"<hex>\"`. Its family sets size, steps, cfg_scale and sampler where "
         "the scene sets none (SDXL 1024x1024; turbo 512x512, cfg 0, 4 steps).",
         "generation", aliases=("sd_model", "model_checkpoint")),
    _set("sampler", "enum", "euler_a", "Sampler (diffusers scheduler). Deforum and A1111 names are accepted. "
         "SD3 / SD3.5 and Flux sample with `flow_euler` (their default), and only they do.",
         "generation", choices=SAMPLERS, choice_aliases=SAMPLER_ALIASES, refused=UNSUPPORTED_SAMPLERS,
         deforum="sampler"),
    _set("seed", "seed", 42, "Start seed, optionally followed by the seed behaviour and its N: `seed 42 iter 2`.",
         "generation", min=0, max=2**32 - 1, deforum="seed",
         refused={"-1": "Deforum's -1 draws a new seed each run; dfm scenes are reproducible: write any number"},
         effect=Effect.NONE, feeds=("seed",)),
    _set("seed_behavior", "enum", "iter", "How the seed advances per diffused frame: iter (+1 every N frames), "
         "fixed, random (deterministic from the start seed), ladder (+2, −1), alternate (+1, −1), schedule "
         "(the `seed_schedule`; 2D, 3D and video modes).",
         "generation", choices=SEED_BEHAVIOURS, aliases=("seed_behaviour",), deforum="seed_behavior",
         effect=Effect.NONE, feeds=("seed",)),
    _set("seed_iter_n", "int", 1, "For `iter`: the seed advances every N diffused frames.", "generation",
         min=1, aliases=("seed_iter_N",), deforum="seed_iter_N", effect=Effect.NONE, feeds=("seed",)),
    # two Deforum keys (seed_resize_from_w, seed_resize_from_h): deforum_import/export map them, as `size` its W, H
    _set("seed_resize_from", "size", None, "A1111's \"resize seed from\": each diffusion's starting noise (seed "
         "and subseed) is drawn at this W×H and centred in the frame, so a seed keeps its composition at another "
         "size. Unset: drawn at the frame's own size.", "generation", min=64, max=4096, multiple_of=8),
    _set("cadence", "int", 1, "Diffuse every Nth frame; the frames between are warped and blended.",
         "generation", min=1, max=50, modes=names_where("allows_cadence"), aliases=("diffusion_cadence",),
         deforum="diffusion_cadence", effect=Effect.NONE, feeds=(*CADENCE_PLAN, "seed", *STEPS_RUN)),
    _set("init_image", "path", None, "An image to start from: frame 0 becomes img2img from it.", "generation",
         aliases=("init",), deforum="init_image", feeds=STEPS_RUN),
    _set("init_strength", "float", None, "Strength for frame 0 from the init image; defaults to the strength "
         "schedule at frame 0.", "generation", min=0, max=1, effect=Effect.NONE, feeds=STEPS_RUN),
    _set("prompt_crossfade", "time", 0, "Blend the text embeddings over this many frames (or seconds) after "
         "each prompt change instead of a hard cut.", "generation", min=0, modes=ANIMATED, effect=Effect.NONE,
         feeds=PROMPTS_FED),
    _set("images_per_prompt", "int", 1, "Stills mode: images rendered for each prompt.", "generation", min=1,
         max=1000, modes=frozenset({"none"}), aliases=("n_samples", "n_batch"), effect=Effect.NONE, moves_rows=True),
    # motion and image
    _set("border", "enum", "replicate", "How the 2D warp fills pixels that come from outside the frame.",
         "motion", choices=("replicate", "wrap", "reflect", "zeros"), modes=frozenset({"2d"}), deforum="border"),
    _set("perspective_flip", "bool", False, "Apply the perspective_flip_* schedules (2D pseudo-3D tilt).",
         "motion", modes=frozenset({"2d"}), aliases=("enable_perspective_flip", "flip_2d_perspective"),
         deforum="enable_perspective_flip"),
    _set("color_coherence", "enum", "lab", "Match each frame's colour histogram to the first warped frame, in "
         "this colour space.", "image", choices=("none", "rgb", "hsv", "lab"), modes=MOTION,
         choice_aliases={"match_frame_0_lab": "lab", "match_frame_0_hsv": "hsv", "match_frame_0_rgb": "rgb"},
         deforum="color_coherence"),
    _set("color_force_grayscale", "bool", False, "Turn every frame to grey before diffusion.", "image",
         modes=MOTION, deforum="color_force_grayscale"),
    # 3D
    _set("use_depth_warping", "bool", True, "3D: warp by a depth map (off: a flat plane).", "3d",
         modes=frozenset({"3d"}), deforum="use_depth_warping"),
    _set("depth_model", "string", "Intel/dpt-hybrid-midas", "3D: depth model (hub id or local folder): "
         "DPT/MiDaS or Depth Anything.", "3d", modes=frozenset({"3d"}), aliases=("depth_algorithm",)),
    _set("midas_weight", "float", 0.2, "3D: weight of the depth model against a flat plane.", "3d", min=0, max=1,
         modes=frozenset({"3d"}), deforum="midas_weight"),
    _set("padding_mode", "enum", "border", "3D: how the depth warp fills pixels from outside the frame.", "3d",
         choices=("border", "reflection", "zeros"), modes=frozenset({"3d"}), deforum="padding_mode"),
    _set("sampling_mode", "enum", "bicubic", "3D: resampling filter of the depth warp.", "3d",
         choices=("bicubic", "bilinear", "nearest"), modes=frozenset({"3d"}), deforum="sampling_mode"),
    _set("save_depth_maps", "bool", False, "3D: also write each depth map.", "3d", modes=frozenset({"3d"}),
         deforum="save_depth_maps"),
    # video input
    _set("video_init_path", "path", None, "Video mode: the input video. In 2D and 3D: the hybrid video "
         "(`hybrid_composite`, `hybrid_motion`).", "video", modes=frozenset({"video", *MOTION}),
         aliases=("video_init", "video_input"), deforum="video_init_path"),
    _set("extract_nth_frame", "int", 1, "Video mode (and hybrid video): use every Nth input frame.", "video", min=1,
         modes=frozenset({"video", *MOTION}), deforum="extract_nth_frame"),
    _set("extract_from_frame", "int", 0, "Video mode (and hybrid video): first input frame used.", "video", min=0,
         modes=frozenset({"video", *MOTION}), deforum="extract_from_frame"),
    _set("extract_to_frame", "int", -1, "Video mode (and hybrid video): last input frame used (-1: the end).",
         "video", min=-1, modes=frozenset({"video", *MOTION}), deforum="extract_to_frame"),
    _set("video_mask_path", "path", None, "Video mode: a mask video (white = keep the input).", "video",
         modes=frozenset({"video"}), deforum="video_mask_path"),
    # interpolation
    _set("interpolate_key_frames", "bool", False, "Interpolation mode: place prompts at their key frames "
         "instead of evenly.", "interpolation", modes=frozenset({"interpolation"}),
         deforum="interpolate_key_frames", effect=Effect.NONE, moves_rows=True),
    _set("interpolate_x_frames", "int", 4, "Interpolation mode: frames between two prompts.", "interpolation",
         min=0, max=10000, modes=frozenset({"interpolation"}), deforum="interpolate_x_frames", effect=Effect.NONE,
         moves_rows=True),
    # output
    _set("output_dir", "path", None, "Where `dfm render` writes (default: outputs/<scene name>).", "output",
         export="local", must_exist=False, effect=Effect.NONE),
    _set("save_video", "bool", True, "Encode video.mp4 after the frames.", "output", effect=Effect.VIDEO),
    _set("video_crf", "int", 17, "H.264 quality of video.mp4 (0 best … 51 worst).", "output", min=0, max=51,
         export="local", effect=Effect.VIDEO),
    # finishing (runtime/interpolate.py, runtime/upscale.py): more files beside video.mp4, the frames untouched
    _set("interpolate", "enum", "none", "Frame interpolation of the finished video: none, flow (optical flow, no "
         "weights), rife (Practical-RIFE v4.6, `interpolate_weights`) or film (FILM's TorchScript model, "
         "`interpolate_weights`); writes the interpolated video beside video.mp4.", "output", modes=ANIMATED,
         choices=("none", "flow", "rife", "film"),
         choice_aliases={"disabled": "none", "rife_v4_6": "rife", "rife_v4_3": "rife", "rife_v4_0": "rife"},
         labels={"none": "None", "rife": "RIFE v4.6", "film": "FILM"}, deforum="frame_interpolation_engine",
         effect=Effect.VIDEO),
    _set("interpolate_times", "int", 2, "Interpolation: N − 1 new frames between each pair; the fps × N (with "
         "`interpolate_slow_mo`, the fps kept and the clip N times longer).", "output", min=2, max=10,
         modes=ANIMATED, deforum="frame_interpolation_x_amount", effect=Effect.VIDEO),
    _set("interpolate_slow_mo", "bool", False, "Interpolation keeps the fps: slow motion (the soundtrack is "
         "dropped).", "output", modes=ANIMATED, deforum="frame_interpolation_slow_mo_enabled", effect=Effect.VIDEO),
    _set("interpolate_weights", "path", None, "The RIFE (flownet.pkl) or FILM (film_net_fp16.pt) weights file.",
         "output", modes=ANIMATED, export="local", effect=Effect.VIDEO),
    _set("interpolate_upscaled", "bool", False, "Interpolate the upscaled video (with `upscale_model`) instead of "
         "video.mp4.", "output", modes=ANIMATED, deforum="frame_interpolation_use_upscaled", effect=Effect.VIDEO),
    _set("upscale_model", "path", None, "An upscaler (ESRGAN family and others spandrel reads: .safetensors; a "
         ".pth only with --allow-pickle); writes the upscaled video beside video.mp4.", "output", export="local",
         effect=Effect.VIDEO),
    _set("upscale_scale", "float", None, "The upscale factor (unset: the model's own, e.g. 4 for a 4x model).",
         "output", min=1, max=8, effect=Effect.VIDEO),
    # prompts
    Param("prompt", Kind.PROMPT, "string", None, "The positive prompt from a frame on: `prompt 4s \"a cat\"`. "
          "Without a time it starts at frame 0. ` --neg ` inside splits off a negative part.", "prompts",
          aliases=("positive",), feeds=PROMPTS_FED),
    Param("negative", Kind.PROMPT, "string", "", "The negative prompt from a frame on, keyed independently of "
          "the positive prompts.", "prompts", aliases=("negative_prompt", "neg"), feeds=NEGATIVE_COLUMNS),
    # LoRAs and embeddings (compiler/networks.py): several statements each; the table's settings list them
    _set("lora", "lora", None, "A LoRA, `lora \"film.safetensors\" 0:(0), 2s:(0.8)`: a file (relative to the scene) "
         "or a hub id, then its weight, a schedule (default 1) applied to the UNet and the text encoder. Several "
         "statements load several LoRAs; a warning beyond ±2.", "prompts", min=-4, max=4, export="local",
         feeds=("lora_weights",)),
    _set("lora_dir", "path", None, "The folder `<lora:name:w>` tags in prompts load from (A1111's models/Lora): "
         "name.safetensors (or .pt/.ckpt), also in a subfolder.", "prompts", export="local"),
    _set("embedding", "embedding", None, "A textual-inversion embedding (.safetensors; .pt/.bin with "
         "--allow-pickle): its token, the file name without the extension, stands for its vectors in every "
         "prompt. Several statements load several.", "prompts", export="local"),
    _set("embeddings_dir", "path", None, "A folder of textual-inversion embeddings (A1111's embeddings/): each file "
         "whose name a prompt uses as a word is loaded, as if named by `embedding`.", "prompts", export="local"),
    # motion schedules
    _sched("angle", 0.0, "2D rotation per frame, counter-clockwise.", "motion", "degrees/frame",
           modes=frozenset({"2d"}), parseq="angle", parseq_delta="add", deforum="angle", read=Read.MOTION),
    _sched("zoom", 1.0, "2D scale per frame (1.02 zooms in 2 % each frame).", "motion", "×/frame",
           modes=frozenset({"2d"}), parseq="zoom", parseq_delta="multiply", excluded=(0.0,), warn_below=0,
           warn_why="a negative zoom also turns the frame half a turn (cv2's rotation matrix with a negative scale, "
           "as Deforum warps it)", deforum="zoom", read=Read.MOTION),
    _sched("translation_x", 0.0, "Move right per frame (2D: pixels; 3D: camera units).", "motion", "px/frame",
           modes=MOTION, parseq="translation_x", parseq_delta="add", deforum="translation_x", read=Read.MOTION),
    _sched("translation_y", 0.0, "Move down per frame (2D: pixels; 3D: camera units).", "motion", "px/frame",
           modes=MOTION, parseq="translation_y", parseq_delta="add", deforum="translation_y", read=Read.MOTION),
    _sched("translation_z", 0.0, "3D: move the camera forward per frame.", "motion", "units/frame",
           modes=frozenset({"3d"}), parseq="translation_z", parseq_delta="add", deforum="translation_z",
           read=Read.MOTION),
    _sched("rotation_3d_x", 0.0, "3D: tilt per frame.", "motion", "degrees/frame", modes=frozenset({"3d"}),
           parseq="rotation_3d_x", parseq_delta="add", deforum="rotation_3d_x", read=Read.MOTION),
    _sched("rotation_3d_y", 0.0, "3D: pan per frame.", "motion", "degrees/frame", modes=frozenset({"3d"}),
           parseq="rotation_3d_y", parseq_delta="add", deforum="rotation_3d_y", read=Read.MOTION),
    _sched("rotation_3d_z", 0.0, "3D: roll per frame.", "motion", "degrees/frame", modes=frozenset({"3d"}),
           parseq="rotation_3d_z", parseq_delta="add", deforum="rotation_3d_z", read=Read.MOTION),
    _sched("transform_center_x", 0.5, "2D: rotation and zoom centre, as a fraction of the width.", "motion",
           modes=frozenset({"2d"}), parseq="transform_center_x", deforum="transform_center_x", read=Read.MOTION),
    _sched("transform_center_y", 0.5, "2D: rotation and zoom centre, as a fraction of the height.", "motion",
           modes=frozenset({"2d"}), parseq="transform_center_y", deforum="transform_center_y", read=Read.MOTION),
    _sched("perspective_flip_theta", 0.0, "2D perspective flip: rotation about z.", "motion", "degrees",
           modes=frozenset({"2d"}), parseq="perspective_flip_theta", parseq_delta="add",
           deforum="perspective_flip_theta", read=Read.MOTION, read_if="perspective_flip"),
    _sched("perspective_flip_phi", 0.0, "2D perspective flip: rotation about x.", "motion", "degrees",
           modes=frozenset({"2d"}), parseq="perspective_flip_phi", parseq_delta="add", deforum="perspective_flip_phi",
           read=Read.MOTION, read_if="perspective_flip"),
    _sched("perspective_flip_gamma", 0.0, "2D perspective flip: rotation about y.", "motion", "degrees",
           modes=frozenset({"2d"}), parseq="perspective_flip_gamma", parseq_delta="add",
           deforum="perspective_flip_gamma", read=Read.MOTION, read_if="perspective_flip"),
    _sched("perspective_flip_fv", 53.0, "2D perspective flip: field of view.", "motion", "degrees",
           modes=frozenset({"2d"}), parseq="perspective_flip_fv", min=0, max=180, min_open=True, max_open=True,
           deforum="perspective_flip_fv", read=Read.MOTION, read_if="perspective_flip"),
    _sched("fov", 40.0, "3D: camera field of view.", "3d", "degrees", modes=frozenset({"3d"}), parseq="fov",
           min=0, max=180, min_open=True, max_open=True, deforum="fov_schedule", read=Read.MOTION),
    _sched("near", 200.0, "3D: near plane (kept for Deforum compatibility).", "3d", modes=frozenset({"3d"}),
           parseq="near", min=0, min_open=True, aliases=("near_plane",), deforum="near_schedule", read=Read.NEVER),
    _sched("far", 10000.0, "3D: far plane (kept for Deforum compatibility).", "3d", modes=frozenset({"3d"}),
           parseq="far", min=0, min_open=True, aliases=("far_plane",), deforum="far_schedule", read=Read.NEVER),
    # generation schedules
    _sched("strength", 0.65, "How much of the previous frame survives: 0 ignores it, 1 keeps it (0 steps).",
           "generation", modes=names_where("uses_strength"), parseq="strength", min=0, max=1,
           deforum="strength_schedule", read=Read.NEVER, feeds=STEPS_RUN),
    _sched("noise", 0.02, "Gaussian noise added to the warped previous frame (std in [-1, 1] pixel units).",
           "generation", modes=MOTION, parseq="noise", warn_below=0,
           warn_why="a negative noise adds noise as strong as its absolute value (the draw's sign flipped), as "
           "Deforum's does", deforum="noise_schedule", read=Read.INIT),
    _sched("contrast", 1.0, "Gain applied to the warped previous frame.", "generation", modes=MOTION,
           parseq="contrast", warn_below=0,
           warn_why="a negative contrast inverts the warped frame (Deforum's 8-bit wrap-around: at -1 each pixel "
           "becomes its negative)", deforum="contrast_schedule", read=Read.INIT),
    _sched("cfg_scale", 7.0, "Classifier-free guidance scale.", "generation", aliases=("scale",),
           parseq="scale", min=0, max=100, deforum="cfg_scale_schedule", read=Read.DIFFUSED, feeds=("unet_evals",)),
    _sched("true_cfg_scale", 1.0, "Flux.1 only: classifier-free guidance with the negative prompt above 1 "
           "(diffusers' true_cfg_scale: a second pass per step), beside the guidance `cfg_scale` embeds; 1 leaves "
           "the negative prompt unused, as Flux is distilled to run.", "generation", min=1, max=100,
           deforum=None, parseq=None, read=Read.DIFFUSED, feeds=("unet_evals",)),
    _sched("steps", 25, "Sampler steps of a full denoise; img2img runs int((1 - strength) × steps).",
           "generation", type="int", min=1, max=1000, deforum="steps_schedule", parseq=None, read=Read.DIFFUSED,
           feeds=STEPS_RUN),
    Param("seed_schedule", Kind.SCHEDULE, "int", 0, "With `seed_behavior schedule`: the seed of each diffused "
          "frame (`s` is the start seed); −1 is a seed drawn from the start seed and the frame, the same on every "
          "run (Deforum draws a new random one).", "generation", min=-1, max=2**32 - 1, modes=SEEDED_MODES,
          deforum="seed_schedule", parseq=None,
          read=Read.NEVER, feeds=("seed",)),  # Parseq's `seed` field carries the table's seed column
    _sched("subseed", 1, "Variation seed (A1111): the noise of this seed is slerped into the seed's noise by "
           "subseed_strength.", "generation", type="int", min=0, max=2**32 - 1, deforum="subseed_schedule",
           parseq="subseed", read=Read.DIFFUSED),
    _sched("subseed_strength", 0.0, "How far each diffusion's starting noise moves from the seed's noise towards "
           "the subseed's (A1111's slerp): 0 is the seed alone, 1 the subseed alone.", "generation", min=0, max=1,
           deforum="subseed_strength_schedule", parseq="subseed_strength", read=Read.DIFFUSED),
    _sched("clip_skip", 1, "CLIP skip: prompts are encoded with the text encoder's hidden state clip_skip layers "
           "from its end, then its final layer norm (A1111's \"Clip skip\"; 1 is the last layer). SD 2.x models "
           "ignore it, as in A1111.", "generation", type="int", min=1, max=12, aliases=("clipskip",
           "clipskip_schedule"), deforum="clipskip_schedule", parseq="clipskip", read=Read.DIFFUSED),
    _sched("kernel", 5, "Unsharp mask: Gaussian kernel size (odd, or 0 to derive it from sigma).", "image",
           type="int", modes=MOTION, aliases=("antiblur_kernel",), parseq="antiblur_kernel", min=0, max=99,
           deforum="kernel_schedule", read=Read.INIT),
    _sched("sigma", 1.0, "Unsharp mask: Gaussian sigma.", "image", modes=MOTION, aliases=("antiblur_sigma",),
           parseq="antiblur_sigma", min=0, max=100, deforum="sigma_schedule", read=Read.INIT),
    _sched("amount", 0.0, "Unsharp mask: amount (0 turns it off).", "image", modes=MOTION,
           aliases=("antiblur_amount",), parseq="antiblur_amount", warn_below=0,
           warn_why="a negative amount does nothing: the unsharp mask sharpens only above 0, in Deforum too",
           deforum="amount_schedule", read=Read.INIT),
    _sched("threshold", 0.0, "Unsharp mask: pixels whose difference from the blur is below this (0..255) are "
           "left unsharpened.", "image", modes=MOTION, aliases=("antiblur_threshold",),
           parseq="antiblur_threshold", min=0, max=255, deforum="threshold_schedule", read=Read.INIT),
)



# ---- hybrid video and optical flow (Deforum's hybrid_* and optical_flow_* keys), 2D and 3D --------------------

FLOW_METHODS = ("dis_medium", "dis_fine", "farneback", "raft")
_FLOW_OFF = ("none", *FLOW_METHODS)
_FLOW_LABELS = {"none": "None", "dis_medium": "DIS Medium", "dis_fine": "DIS Fine", "farneback": "Farneback",
                "raft": "RAFT"}
_HYBRID_ON = {"false": "none", "true": "normal"}  # early Deforum files store hybrid_composite as a bool


def _hyb_set(name, type, default, doc, **kw) -> Param:
    return _set(name, type, default, doc, "hybrid", modes=MOTION, deforum=name, **kw)


def _hyb_sched(name, default, doc, read: Read, **kw) -> Param:
    return _sched(name, default, doc, "hybrid", modes=MOTION, deforum=f"{name}_schedule", parseq=None, read=read,
                  **kw)


HYBRID: tuple[Param, ...] = (
    _hyb_set("hybrid_composite", "enum", "none", "Blend the input video's frame into each frame before it is "
             "diffused (`video_init_path`): none, normal, before_motion (blended before the camera moves) or "
             "after_generation (into the diffused frame).", choices=("none", "normal", "before_motion",
                                                                     "after_generation"),
             choice_aliases=_HYBRID_ON, labels={"none": "None", "normal": "Normal", "before_motion": "Before Motion",
                                                "after_generation": "After Generation"}),
    _hyb_set("hybrid_motion", "enum", "none", "Move the frame with the input video's camera: none, optical_flow "
             "(dense flow between video frames), perspective or affine (RANSAC on matched features).",
             choices=("none", "optical_flow", "perspective", "affine"),
             labels={"none": "None", "optical_flow": "Optical Flow", "perspective": "Perspective", "affine": "Affine"}),
    _hyb_set("hybrid_motion_use_prev_img", "bool", False, "Hybrid motion from the previous output frame to the "
             "next video frame, instead of between consecutive video frames."),
    _hyb_set("hybrid_flow_method", "enum", "dis_medium", "Optical flow of hybrid motion: dis_medium, dis_fine, "
             "farneback (OpenCV, no weights) or raft (torchvision's RAFT-large, from its local weights file).",
             choices=FLOW_METHODS, labels=_FLOW_LABELS),
    _hyb_set("hybrid_flow_consistency", "bool", False, "Check the flow forwards and backwards and leave occluded "
             "pixels unmoved, so they are not smeared."),
    _hyb_set("hybrid_consistency_blur", "int", 2, "Blur (pixels) of the consistency mask.", min=0, max=64),
    _hyb_set("hybrid_comp_mask_type", "enum", "none", "The composite's mask, as in Deforum: the previous frame "
             "stays where it is white, the video shows where it is black. none (the video everywhere), depth (the "
             "frame's depth, far white), video_depth (the video frame's), blend (a grey blend of the two), "
             "difference (where they differ).", choices=("none", "depth", "video_depth", "blend", "difference"),
             labels={"none": "None", "depth": "Depth", "video_depth": "Video Depth", "blend": "Blend",
                     "difference": "Difference"}),
    _hyb_set("hybrid_comp_mask_inverse", "bool", False, "Invert the composite mask."),
    _hyb_set("hybrid_comp_mask_equalize", "enum", "none", "Equalise the mask's histogram: none, before or after "
             "its contrast, or both.", choices=("none", "before", "after", "both"),
             labels={"none": "None", "before": "Before", "after": "After", "both": "Both"}),
    _hyb_set("hybrid_comp_mask_auto_contrast", "bool", False, "Stretch the mask's levels between the auto-contrast "
             "cut-off schedules."),
    _hyb_set("hybrid_use_first_frame_as_init_image", "bool", True, "With hybrid video, frame 0 starts from the "
             "input video's first frame (as an init image)."),
    _hyb_set("hybrid_use_init_image", "bool", False, "Use `init_image` as the hybrid video (a still)."),
    _set("optical_flow_cadence", "enum", "none", "With cadence > 1: warp the tween frames along the optical flow "
         "between the two diffused frames (none: a plain cross-fade), by this method.", "hybrid",
         choices=_FLOW_OFF, labels=_FLOW_LABELS, modes=MOTION, deforum="optical_flow_cadence"),
    _set("optical_flow_redo_generation", "enum", "none", "Diffuse each frame twice: once to measure the flow from "
         "the previous frame, then again from the previous frame moved along it (Deforum's redo generation).",
         "hybrid", choices=_FLOW_OFF, labels=_FLOW_LABELS, modes=MOTION,
         deforum="optical_flow_redo_generation"),
    _hyb_sched("hybrid_comp_alpha", 1.0, "How much of the composite replaces the frame (1: all of it).",
               Read.INIT, min=0, max=1),
    _hyb_sched("hybrid_comp_mask_blend_alpha", 0.5, "The blend mask's share of the video frame.", Read.INIT,
               min=0, max=1),
    _hyb_sched("hybrid_comp_mask_contrast", 1.0, "Contrast of the composite mask.", Read.INIT, min=0, max=100),
    _hyb_sched("hybrid_comp_mask_auto_contrast_cutoff_high", 100.0, "Auto-contrast: the percentile of the mask "
               "made white.", Read.INIT, min=0, max=100),
    _hyb_sched("hybrid_comp_mask_auto_contrast_cutoff_low", 0.0, "Auto-contrast: the percentile of the mask made "
               "black.", Read.INIT, min=0, max=100),
    _hyb_sched("hybrid_flow_factor", 1.0, "Scale of the hybrid motion's optical flow.", Read.MOTION),
    _hyb_sched("cadence_flow_factor", 1.0, "Scale of the flow the tween frames follow (optical_flow_cadence).",
               Read.EVERY),
    _hyb_sched("redo_flow_factor", 1.0, "Scale of the flow a redo generation moves the frame by.", Read.DIFFUSED),
)


def _unit_rows(n: int) -> tuple[Param, ...]:
    """ControlNet unit n's statements, named as Deforum's keys (`cn_1_weight`): settings, and three schedules
    read on diffused rows. Deforum's `cn_N_low_vram` and `cn_N_overwrite_frames` have no row: they are about
    A1111's memory and its extracted frames, which dfm does not have (the importer notes them)."""
    def name(field: str) -> str:
        return cn.column(n, field)

    def unit_set(field, type, default, doc, **kw) -> Param:
        kw.setdefault("deforum", name(field))
        return _set(name(field), type, default, doc, "controlnet", cn_unit=n, **kw)

    def unit_sched(field, default, doc, **kw) -> Param:
        return Param(name(field), Kind.SCHEDULE, "float", default, doc, "controlnet", deforum=name(field),
                     parseq=name(field), aliases=(f"{name(field)}_schedule",), read=Read.DIFFUSED, cn_unit=n, **kw)

    preprocessors = tuple(cn.PREPROCESSORS)
    return (
        unit_set("model", "string", None, "ControlNet model of this unit: a hub id, a diffusers folder, a "
                 ".safetensors file, or an A1111 name (`control_v11p_sd15_canny [d14c016b]`) looked up by its "
                 "stem in `controlnet_dir`. Setting it turns the unit on. Its family must be the scene model's "
                 "(SD 1.x/2.x or SDXL)."),
        unit_set("enabled", "bool", True, "`false` turns the unit off and keeps its statements (the unit is "
                 "on whenever its model is set)."),
        unit_set("module", "enum", "none", "Preprocessor that turns the source into the control image: "
                 + ", ".join(f"{k} ({v.doc})" for k, v in cn.PREPROCESSORS.items()) + ". A1111 module names "
                 "are accepted.", choices=preprocessors,
                 choice_aliases={k: v for k, v in cn.PREPROCESSOR_ALIASES.items() if v is not None},
                 refused={k: "a reference unit has no ControlNet model in diffusers"
                          for k, v in cn.PREPROCESSOR_ALIASES.items() if v is None}),
        unit_set("vid_path", "path", None, "The control source: a video (frame i of the scene takes video "
                 "frame i; in video mode the frames the input video's extraction takes), an image (every "
                 "frame), or a folder of frames (sorted by name). A source shorter than the scene holds its "
                 "last frame.", aliases=(name("source"), name("image"))),
        unit_set("mask_vid_path", "path", None, "A mask video or image: the unit's control applies where it "
                 "is white.", aliases=(name("mask"),)),
        unit_set("loopback_mode", "bool", False, "The control image is the frame's own img2img source (the "
                 "previous frame, warped), instead of `vid_path`; frame 0 uses the init image, or has no "
                 "control without one."),
        unit_set("processor_res", "int", 512, "The preprocessor's working resolution (short side, pixels).",
                 min=64, max=4096),
        unit_set("threshold_a", "float", None, "The preprocessor's first threshold (canny: low, default 100; "
                 "mlsd: value threshold, default 0.1); unset: the preprocessor's default.", min=-1, max=1024),
        unit_set("threshold_b", "float", None, "The preprocessor's second threshold (canny: high, default 200; "
                 "mlsd: distance threshold, default 0.1); unset: the preprocessor's default.", min=-1, max=1024),
        unit_set("resize_mode", "enum", "crop_and_resize", "How the control image is fitted to the frame: "
                 "crop_and_resize (cover, then crop the centre; Deforum's \"Inner Fit (Scale to Fit)\"), "
                 "just_resize (stretch), resize_and_fill (fit inside, then pad; \"Outer Fit (Shrink to Fit)\").",
                 choices=cn.RESIZE_MODES, choice_aliases=cn.RESIZE_ALIASES),
        unit_set("control_mode", "enum", "balanced", "sd-webui-controlnet's control mode: balanced, prompt "
                 "(\"My prompt is more important\": the residuals fade towards the shallow layers) or control "
                 "(\"ControlNet is more important\": that fade, on the conditional pass only).",
                 choices=cn.CONTROL_MODES, choice_aliases=cn.CONTROL_ALIASES),
        unit_set("pixel_perfect", "bool", False, "Set processor_res from the frame and source sizes "
                 "(sd-webui-controlnet's pixel perfect)."),
        unit_set("union_type", "enum", "auto", "For a ControlNet Union (SDXL, or Flux's Union Pro: "
                 + ", ".join(cn.FLUX_UNION_MODES) + "): which kind of control the image is, one of "
                 + ", ".join(cn.UNION_TYPES) + "; auto: the preprocessor's (canny, lineart and mlsd are "
                 "canny; softedge_* softedge; …). No effect on a plain ControlNet.",
                 choices=("auto", *cn.UNION_TYPES), deforum=None),
        unit_sched("weight", 1.0, "ControlNet weight of this unit per frame (its residuals' scale); 0 skips the "
                   "unit's model on that frame.", min=0, max=10),
        unit_sched("guidance_start", 0.0, "Where the unit starts acting, as a fraction of the frame's sampling "
                   "steps.", min=0, max=1),
        unit_sched("guidance_end", 1.0, "Where the unit stops acting, as a fraction of the frame's sampling "
                   "steps.", min=0, max=1),
    )


PARAMS = (
    *PARAMS,
    _set("controlnet_dir", "path", None, "The folder A1111 ControlNet names (`cn_1_model \"control_v11p_sd15_canny "
         "[d14c016b]\"`) are found in, by file stem (A1111's models/ControlNet).", "controlnet", export="local"),
    _set("annotator_dir", "path", None, "A folder holding the preprocessors' weight files (lllyasviel/Annotators: "
         "ControlNetHED.pth, body_pose_model.pth, …); unset: the Hugging Face cache.", "controlnet", export="local"),
    _set("save_control_frames", "bool", False, "Also write each unit's control image beside the frames "
         "(controlnet_N/00000.png).", "controlnet", export="local"),
    *(row for n in range(1, cn.MAX_UNITS + 1) for row in _unit_rows(n)),
    *HYBRID,
)

BY_NAME: dict[str, Param] = {}
ALIASES: dict[str, str] = {}
SCHEDULES: tuple[Param, ...] = ()
SETTINGS: tuple[Param, ...] = ()


def _index() -> None:
    """Rebuild the lookups from PARAMS (at import, and around `temporary`)."""
    global SCHEDULES, SETTINGS
    BY_NAME.clear()
    ALIASES.clear()
    for p in PARAMS:
        BY_NAME[p.name] = p
        for a in (p.name, *p.aliases):
            ALIASES[a] = p.name
            ALIASES[a.lower()] = p.name
    SCHEDULES = tuple(p for p in PARAMS if p.kind is Kind.SCHEDULE)
    SETTINGS = tuple(p for p in PARAMS if p.kind is Kind.SETTING)


_index()


@contextmanager
def temporary(*params: Param) -> Iterator[None]:
    """The catalogue with extra rows while the block runs: a test adds a parameter the way a developer
    would and sees every stage pick it up. Readers go through this module's names (`cat.SCHEDULES`),
    never copies taken at import."""
    global PARAMS
    saved = PARAMS
    PARAMS = (*PARAMS, *params)
    _index()
    try:
        yield
    finally:
        PARAMS = saved
        _index()


# statements that are not parameters
VERSION_STATEMENT = "dfm"
FORMAT_VERSION = 1


def column_present(p: Param, settings: Mapping[str, object]) -> bool:
    """Whether schedule `p` has a column in the table of these settings: a ControlNet unit's only while the unit
    is active, the hybrid schedules only while hybrid video or optical flow is on; every other one always."""
    if p.cn_unit is not None:
        return p.cn_unit in (settings.get(cn.UNITS_SETTING) or ())
    if p.group == "hybrid":
        return hybrid.in_use(settings)
    return True


def setting_defaults() -> dict[str, object]:
    """Every static setting at its default, as the compiler resolves a scene that sets none."""
    return {p.name: p.default for p in SETTINGS}


def lookup(name: str) -> Param | None:
    """The parameter a statement name (or alias) stands for."""
    canon = ALIASES.get(name) or ALIASES.get(name.lower())
    return BY_NAME.get(canon) if canon else None


def resolve_choice(param: Param, text: str) -> str | None:
    """The canonical choice for `text`, or None when it is not one."""
    if text in param.choices:
        return text
    norm = normalise_choice(text)
    if norm in param.choices:
        return norm
    return param.choice_aliases.get(norm)


def did_you_mean(word: str, candidates, cutoff: float = 0.6) -> str | None:
    matches = difflib.get_close_matches(word.lower(), list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def all_names() -> list[str]:
    return sorted({*ALIASES.values()})


def column_reads() -> dict[str, ColumnRead]:
    """When the renderer reads each schedule's column (its row's `read`, `modes` and `read_if`), as the
    compiler hands it over in the table; a row without `read` is left out (read on every row)."""
    return {p.name: ColumnRead(p.read, frozenset(p.modes) if p.modes != ALL else None, p.read_if)
            for p in SCHEDULES if p.read is not None}


def setting_effects() -> dict[str, Effect]:
    """What a change of each setting can change (its row's `effect`), as the compiler hands it over."""
    return {p.name: p.effect for p in SETTINGS}
