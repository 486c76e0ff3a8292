"""Which Stable Diffusion family a model source is, told without torch, diffusers or a network call.

Both the compiler (per-family defaults: size, steps, cfg_scale, sampler) and the runtime (which
pipeline to load, which errors to raise) need the answer, so it is computed once, here, from what
can be read cheaply: a diffusers folder's JSON files, a .safetensors header (an 8-byte little-endian
length and a JSON table of keys, dtypes and shapes: no weight is read), a hub id's snapshot in the
local Hugging Face cache, and, failing all of these, the id's or file's name (a guess, and said to be).

Families and what they are trained for (`DEFAULTS`, the one table of per-family defaults):

| family | base | trained at | few-step |
|---|---|---|---|
| sd15 | SD 1.x | 512² | no |
| sd21 | SD 2.x base, epsilon prediction | 512² | no |
| sd21-v | SD 2.x, v-prediction | 768² | no |
| sdxl | SDXL base | 1024² | no |
| sdxl-turbo | SDXL-Turbo (adversarial distillation) | 512² | 1-4 steps, no guidance |
| sd-turbo | SD-Turbo (SD 2.1 distilled) | 512² | 1-4 steps, no guidance |
| sdxl-lightning | SDXL-Lightning / Hyper-SDXL | 1024² | 2-8 steps, no guidance |
| lcm | a latent-consistency distilled UNet (on SD 1.x or SDXL) | its base's | 2-8 steps |
| sd3 | Stable Diffusion 3 / 3.5 (large or medium), an MMDiT with rectified flow | 1024² | no |
| sd35-turbo | SD3.5 Large Turbo (adversarial distillation) | 1024² | 4 steps, no guidance |
| flux-dev | Flux.1 [dev]: guidance-distilled (the guidance is an input, no unconditional pass) | 1024² | no |
| flux-schnell | Flux.1 [schnell]: timestep-distilled, no guidance embedding | 1024² | 1-4 steps, no guidance |

The last four are rectified-flow models (`FLOW_BASES`: base `sd3` or `flux`): a transformer over 16-channel
latents in 2x2 patches instead of a UNet, text from CLIP and T5, sampled by `flow_euler`.

Standard library only (tests/test_families.py checks it): `dfm check` must stay torch-free and fast.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .files import kind_of, shown

BASES = ("sd15", "sd21", "sdxl", "sd3", "flux")  # the architectures the runtime loads
FLOW_BASES = ("sd3", "flux")  # rectified-flow transformers (runtime/flow_matching.py), sampled by FLOW_SAMPLER
FLOW_SAMPLER = "flow_euler"  # diffusers' FlowMatchEulerDiscreteScheduler (compiler/catalogue.py SAMPLERS)
FAMILIES = ("sd15", "sd21", "sd21-v", "sdxl", "sdxl-turbo", "sd-turbo", "sdxl-lightning", "lcm",
            "sd3", "sd35-turbo", "flux-dev", "flux-schnell", "flux-kontext")
TITLES = {
    "sd15": "Stable Diffusion 1.x", "sd21": "Stable Diffusion 2.x (512, epsilon)",
    "sd21-v": "Stable Diffusion 2.x (768, v-prediction)", "sdxl": "Stable Diffusion XL",
    "sdxl-turbo": "SDXL-Turbo", "sd-turbo": "SD-Turbo", "sdxl-lightning": "SDXL-Lightning / Hyper-SDXL",
    "lcm": "a latent consistency model (LCM)",
    "sd3": "Stable Diffusion 3 / 3.5", "sd35-turbo": "SD3.5 Large Turbo",
    "flux-dev": "Flux.1 [dev]", "flux-schnell": "Flux.1 [schnell]", "flux-kontext": "Flux.1 Kontext [dev]",
}

# Compile-time defaults per family, used only where the scene sets none. Sources: the model cards.
# sdxl-turbo / sd-turbo: "trained at 512x512", `guidance_scale=0.0`, 1 step for txt2img and 2 steps at
# strength 0.5 for img2img, EulerAncestralDiscreteScheduler with timestep_spacing "trailing" (their
# scheduler_config.json); dfm takes 4 steps so that Deforum's strength 0.65 still runs one step
# (int(0.35 × 4) = 1). SDXL-Lightning: 1024², guidance 0, "make sure to use trailing timesteps" with
# EulerDiscreteScheduler, 2/4/8-step checkpoints. LCM (LCM_Dreamshaper_v7, lcm-sdxl): 4 steps with
# LCMScheduler; their cards use guidance 8.0, near dfm's default 7, so cfg_scale keeps its default.
# sd21-v: the 768-v model is trained at 768².
# Rectified-flow families, all at 1024x1024 with `flow_euler` (FlowMatchEulerDiscreteScheduler, their
# scheduler_config.json): black-forest-labs/FLUX.1-dev, `guidance_scale=3.5` (the embedded guidance, which
# dfm's cfg_scale feeds) and FluxPipeline's default of 28 steps (the card's example runs 50);
# FLUX.1-schnell, `guidance_scale=0.0`, `num_inference_steps=4`; stabilityai/stable-diffusion-3.5-large,
# `num_inference_steps=28, guidance_scale=3.5` (3.5-medium: 40 and 4.5; SD3-medium: 28 and 7.0, both in
# SD3_VARIANTS); stable-diffusion-3.5-large-turbo, `num_inference_steps=4, guidance_scale=0.0`. With
# Deforum's strength 0.65 the 4-step models run int(0.35 × 4) = 1 step per frame, as the turbo ones above.
DEFAULTS: dict[str, dict[str, object]] = {
    "sd15": {},
    "sd21": {},
    "sd21-v": {"size": (768, 768)},
    "sdxl": {"size": (1024, 1024)},
    "sdxl-turbo": {"size": (512, 512), "cfg_scale": 0.0, "steps": 4, "sampler": "euler_a_trailing"},
    "sd-turbo": {"size": (512, 512), "cfg_scale": 0.0, "steps": 4, "sampler": "euler_a_trailing"},
    "sdxl-lightning": {"size": (1024, 1024), "cfg_scale": 0.0, "steps": 4, "sampler": "euler_trailing"},
    "lcm": {"steps": 4, "sampler": "lcm"},
    "sd3": {"size": (1024, 1024), "cfg_scale": 3.5, "steps": 28, "sampler": FLOW_SAMPLER},
    "sd35-turbo": {"size": (1024, 1024), "cfg_scale": 0.0, "steps": 4, "sampler": FLOW_SAMPLER},
    "flux-dev": {"size": (1024, 1024), "cfg_scale": 3.5, "steps": 28, "sampler": FLOW_SAMPLER},
    "flux-schnell": {"size": (1024, 1024), "cfg_scale": 0.0, "steps": 4, "sampler": FLOW_SAMPLER},
    # black-forest-labs/FLUX.1-Kontext-dev's card: guidance_scale=2.5; FluxKontextPipeline's 28 steps
    "flux-kontext": {"size": (1024, 1024), "cfg_scale": 2.5, "steps": 28, "sampler": FLOW_SAMPLER},
}
# sd3's defaults per model (Family.variant; "3.5-large", or "" when nothing tells, takes DEFAULTS["sd3"])
SD3_VARIANTS: dict[str, dict[str, object]] = {
    "3.5-medium": {"cfg_scale": 4.5, "steps": 40},  # stabilityai/stable-diffusion-3.5-medium's card
    "3-medium": {"cfg_scale": 7.0, "steps": 28},  # stabilityai/stable-diffusion-3-medium-diffusers' card
}
# where a single-file SD3 / Flux checkpoint (the transformer alone, as BFL and Stability ship them) finds its
# text encoders, tokenizers, VAE and scheduler when no model folder lies beside it: the family's own repo
FLOW_PARTS_REPOS: dict[str, str] = {
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "flux-kontext": "black-forest-labs/FLUX.1-Kontext-dev",
    "sd35-turbo": "stabilityai/stable-diffusion-3.5-large-turbo",
    "sd3/3.5-large": "stabilityai/stable-diffusion-3.5-large",
    "sd3/3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "sd3/3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
}


def flow_parts_repo(fam: Family) -> str:
    """The hub repo whose components a single-file checkpoint of flow family `fam` loads beside its transformer
    (SD3 of no known variant: SD3.5 Large's, whose encoders and VAE every SD3 / SD3.5 model shares)."""
    return FLOW_PARTS_REPOS.get(fam.name) or FLOW_PARTS_REPOS.get(f"sd3/{fam.variant}") \
        or FLOW_PARTS_REPOS["sd3/3.5-large"]


SD3_VARIANT_TITLES = {"3.5-large": "SD3.5 Large", "3.5-medium": "SD3.5 Medium", "3-medium": "SD3 Medium"}
LCM_SDXL_SIZE = (1024, 1024)  # an LCM distilled from SDXL keeps SDXL's size

MAX_HEADER = 64 * 1024 * 1024  # a .safetensors header larger than this is not a model's (SDXL's is ~200 kB)
_HELP = ("point the model at a local diffusers folder or a .safetensors file of SD 1.x, 2.x, SDXL, SD3 / SD3.5 or "
         "Flux.1 [dev] / [schnell]")
RENDERED = ("dfm renders SD 1.x, 2.x, SDXL, SD3 / SD3.5, Flux.1 [dev] / [schnell] text-to-image models and "
            "Flux.1 Kontext [dev]")
# the rectified-flow pipelines dfm renders (its own loop follows their img2img variants), by base
FLOW_PIPELINES = {
    "StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux", "FluxKontextPipeline": "flux",
}
FLOW_TRANSFORMERS = {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux"}
FLOW_PATCH = 16  # the VAE's 8 × the transformer's 2x2 patches: each side of a flow model's frame is a multiple
FLUX_CHANNELS = 64  # Flux's transformer reads 16 latent channels in 2x2 patches; Fill has 384, Canny/Depth 128
# Flux models that are not text-to-image (an image goes in beside the prompt): not rendered, told by name
# (Kontext is: each frame's img2img source is its context image, `kontext`)
FLUX_EDIT_NAMES = {"fill": "Flux.1 Fill (an inpainting model)",
                   "canny": "Flux.1 Canny (a control model)", "depth": "Flux.1 Depth (a control model)",
                   "redux": "Flux.1 Redux (an image-variation adapter)"}
# pipelines in a model_index.json that dfm cannot render, with the reason (checked before any weight is read)
UNSUPPORTED_PIPELINES = {
    "StableDiffusion3InpaintPipeline": "an SD3 inpainting pipeline",
    "StableDiffusion3ControlNetPipeline": "an SD3 ControlNet pipeline (diffusers has no SD3 ControlNet img2img "
                                          "pipeline)",
    "FluxInpaintPipeline": "a Flux inpainting pipeline",
    "FluxFillPipeline": FLUX_EDIT_NAMES["fill"],
    "FluxKontextInpaintPipeline": "Flux.1 Kontext inpainting",
    "FluxControlPipeline": "Flux.1 Canny / Depth (a control model)",
    "FluxControlImg2ImgPipeline": "Flux.1 Canny / Depth (a control model)",
    "FluxControlNetPipeline": "a Flux ControlNet pipeline (render the Flux model, with the ControlNet in a unit: "
                              "`cn_1_model`)",
    "FluxPriorReduxPipeline": FLUX_EDIT_NAMES["redux"],
    "StableDiffusionXLInpaintPipeline": "an SDXL inpainting model",
    "StableDiffusionInpaintPipeline": "an inpainting model",
    "StableCascadePriorPipeline": "Stable Cascade",
    "PixArtAlphaPipeline": "PixArt",
}


class UnsupportedModel(UserError):
    """The model is of a family dfm cannot render (an inpainting UNet, Flux Kontext or Fill, Stable Cascade,
    PixArt, a refiner alone)."""


@dataclass(frozen=True)
class Family:
    name: str  # one of FAMILIES
    base: str  # one of BASES: what the runtime loads (its pipeline, its config skeleton)
    why: str  # how it was told, for `dfm check`'s note ("its UNet takes a guidance embedding")
    guess: bool = False  # told from a name only: nothing was read that says so
    variant: str = ""  # sd3 only: "3.5-large", "3.5-medium", "3-medium" (SD3_VARIANTS), "" when nothing tells

    @property
    def title(self) -> str:
        return SD3_VARIANT_TITLES.get(self.variant, TITLES[self.name]) if self.name == "sd3" else TITLES[self.name]

    @property
    def flow(self) -> bool:
        """A rectified-flow transformer (SD3 / SD3.5, Flux), sampled by `flow_euler`."""
        return self.base in FLOW_BASES

    @property
    def guidance_embedded(self) -> bool:
        """The guidance scale is an input of the model (an LCM with time_cond_proj_dim, Flux.1 [dev]): one
        conditional pass per step, never an unconditional one."""
        return self.name in ("flux-dev", "flux-kontext") or "time_cond_proj_dim" in self.why

    def defaults(self) -> dict[str, object]:
        """This family's defaults (a copy): what a scene that sets none of them gets."""
        out = dict(DEFAULTS[self.name])
        if self.name == "lcm" and self.base == "sdxl":
            out["size"] = LCM_SDXL_SIZE
        if self.name == "sd3":
            out.update(SD3_VARIANTS.get(self.variant, {}))
        return out


# ---- names ---------------------------------------------------------------------------------------------


# `stable-diffusion-3…`, `sd3`, `sd3.5`, `sd35`; not `sd-3d-icons` (a 3D-style SD model) nor `sd-30`
_SD3_NAME = re.compile(r"stable-diffusion-3(?![0-9])|(^|[^a-z0-9])sd-?3(?![0-9a-z])|(^|[^a-z0-9])sd-?3\.?5(?![0-9])")


def sd3_variant(name: str) -> str:
    """Which SD3 model a name says: "3.5-medium", "3-medium", "3.5-large", or "" when it does not."""
    n = name.lower().replace("_", "-")
    three_five = bool(re.search(r"3\.5|3-5|sd-?35", n))
    if "medium" in n:
        return "3.5-medium" if three_five else "3-medium"
    return "3.5-large" if "large" in n else ""


def flux_edit_model(name: str) -> str | None:
    """What a Flux model's name says it is when it is not text-to-image (Kontext, Fill, Canny, Depth, Redux)."""
    n = name.lower()
    return next((what for word, what in FLUX_EDIT_NAMES.items() if word in n), None)


def _flow_from_name(n: str, name: str, why: str, guess: bool = True) -> Family | None:
    """Flux (`flux`, `schnell`) or SD3 (`stable-diffusion-3…`, `sd3`, `sd3.5`; `turbo`) from a name."""
    if "flux" in n:
        edit = flux_edit_model(n)
        if edit is not None:
            raise UnsupportedModel(f"`{name}` is {edit}; {RENDERED}", _HELP)
        return Family("flux-kontext" if "kontext" in n else "flux-schnell" if "schnell" in n else "flux-dev", "flux",
                      why, guess)
    if _SD3_NAME.search(n):
        if "turbo" in n:
            return Family("sd35-turbo", "sd3", why, guess, "3.5-large")
        return Family("sd3", "sd3", why, guess, sd3_variant(n))
    return None


def family_from_name(name: str, why: str = "") -> Family:
    """A guess from a hub id or a file name: `flux` (`schnell`), `stable-diffusion-3…`/`sd3` (`turbo`,
    `medium`), `sdxl-turbo`, `sd-turbo`, `lcm`, `lightning`, `hyper`, `xl`, `stable-diffusion-2…` (with
    `base`: 512 epsilon; without: 768-v), else SD 1.x. A Flux Kontext / Fill / Canny / Depth name is
    UnsupportedModel."""
    n = name.lower().replace("_", "-")
    why = why or f"a guess from the name `{name}`"
    flow = _flow_from_name(n, name, why)
    if flow is not None:
        return flow
    xl = bool(re.search(r"xl", n))
    if "turbo" in n:
        return Family("sdxl-turbo" if xl else "sd-turbo", "sdxl" if xl else "sd21", why, True)
    if re.search(r"(^|[^a-z])lcm", n):
        return Family("lcm", "sdxl" if xl else "sd15", why, True)
    if "lightning" in n or "hyper" in n:
        if xl or "lightning" in n:  # SDXL-Lightning exists for SDXL only
            return Family("sdxl-lightning", "sdxl", why, True)
    if xl:
        return Family("sdxl", "sdxl", why, True)
    if re.search(r"stable-diffusion-2|(^|[^a-z0-9])(sd-?2|v2-?[01])", n):
        return Family("sd21" if "base" in n else "sd21-v", "sd21", why, True)
    return Family("sd15", "sd15", why + " (no sign of another family: SD 1.x assumed)", True)


# ---- diffusers folders -----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_HEADER:  # a config is a few kB: never read a huge file whole
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # deeply nested JSON recurses in json's parser
        return {}
    return data if isinstance(data, dict) else {}


def folder_family(folder: Path, what: str | None = None, *, name: str | None = None,
                  source: str = "its model_index.json and configs") -> Family:
    """The family of a diffusers folder from model_index.json, unet/config.json and
    scheduler/scheduler_config.json, then `name` (the folder's, or a hub id) for what the configs do not
    say (a turbo model's). An unsupported pipeline is UnsupportedModel naming it."""
    what = what or f"diffusers folder {folder}"
    index = _read_json(folder / "model_index.json")
    cls = str(index.get("_class_name", ""))
    if cls in UNSUPPORTED_PIPELINES:
        raise UnsupportedModel(f"{what} is {UNSUPPORTED_PIPELINES[cls]}; {RENDERED}", _HELP)
    transformer = _read_json(folder / "transformer" / "config.json")
    base = FLOW_PIPELINES.get(cls) or FLOW_TRANSFORMERS.get(str(transformer.get("_class_name", "")))
    if base is not None:
        kontext = cls == "FluxKontextPipeline"
        return _flow_folder(base, transformer, what, name or folder.name, source, kontext)
    if "transformer" in index or (folder / "transformer").is_dir():
        known = cls or "no pipeline class"
        raise UnsupportedModel(f"{what} is a transformer-based model dfm does not know ({known}); {RENDERED}",
                               _HELP)
    unet = _read_json(folder / "unet" / "config.json")
    sched = _read_json(folder / "scheduler" / "scheduler_config.json")
    channels = unet.get("in_channels", 4)
    if channels not in (4, None):
        raise UnsupportedModel(f"{what} has a UNet of {channels} input channels (an inpainting or "
                               "depth-conditioned model); dfm renders text-to-image models", _HELP)
    has_te2 = (folder / "text_encoder_2").is_dir() or "text_encoder_2" in index
    xl = has_te2 or unet.get("addition_embed_type") == "text_time" or "XL" in cls
    if xl and not (folder / "text_encoder").is_dir() and (folder / "text_encoder_2").is_dir():
        raise UnsupportedModel(f"{what} is an SDXL refiner (one text encoder); dfm renders SDXL base models",
                               "point the model at an SDXL base model")
    base = "sdxl" if xl else ("sd21" if unet.get("cross_attention_dim", 768) == 1024 else "sd15")
    return _refine(base, unet, sched, name or folder.name, source)


def _flow_folder(base: str, transformer: dict, what: str, name: str, source: str, kontext: bool = False) -> Family:
    """An SD3 or Flux folder's family from its transformer/config.json, then its name (SD3.5 Large Turbo
    ships Large's configs; Kontext ships Flux.1 [dev]'s: its pipeline class or its name tells it)."""
    n = name.lower().replace("_", "-")
    plain = transformer.get("in_channels", FLUX_CHANNELS) == FLUX_CHANNELS
    if base == "flux" and (kontext or "kontext" in n) and plain:
        how = "its FluxKontextPipeline" if kontext else f"its name `{name}`"
        return Family("flux-kontext", "flux", f"{source} (Flux) and {how}")
    if base == "flux":
        edit = flux_edit_model(n)
        channels = transformer.get("in_channels", FLUX_CHANNELS)
        if edit is None and channels != FLUX_CHANNELS:
            edit = f"a Flux model of {channels} input channels (Fill or a control model)"
        if edit is not None:
            raise UnsupportedModel(f"{what} is {edit}; {RENDERED}", _HELP)
        if "guidance_embeds" not in transformer:
            fam = _flow_from_name(n, name, "")
            return Family(fam.name if fam else "flux-dev", "flux", f"{source} (Flux); guidance embedding or not: "
                          f"a guess from its name `{name}`", True)
        dev = bool(transformer["guidance_embeds"])
        return Family("flux-dev" if dev else "flux-schnell", "flux",
                      f"{source} (Flux, guidance_embeds {'true' if dev else 'false'})")
    if transformer.get("dual_attention_layers"):
        variant, told = "3.5-medium", "its transformer's dual-attention layers"
    elif transformer.get("num_layers") == 38:
        variant, told = "3.5-large", "its transformer's 38 layers"
    elif transformer.get("num_layers") == 24 and not transformer.get("qk_norm"):
        variant, told = "3-medium", "its transformer's 24 layers without qk-norm"
    else:
        variant, told = sd3_variant(n), f"its name `{name}`"
    if "turbo" in n:
        return Family("sd35-turbo", "sd3", f"{source} (SD3) and its name `{name}`", False, "3.5-large")
    return Family("sd3", "sd3", f"{source} (SD3){', ' + told if variant else ''}", False, variant)


def _refine(base: str, unet: dict, sched: dict, name: str, source: str) -> Family:
    """The family within a base architecture, from the UNet's and the scheduler's configs, then the name."""
    if unet.get("time_cond_proj_dim"):
        return Family("lcm", base, f"its UNet takes a guidance embedding (time_cond_proj_dim "
                                   f"{unet['time_cond_proj_dim']})")
    if sched.get("_class_name") == "LCMScheduler":
        return Family("lcm", base, "its scheduler is LCMScheduler")
    trailing = sched.get("timestep_spacing") == "trailing"
    hint = family_from_name(name)
    if base != "sd15" and (trailing or hint.name in ("sdxl-turbo", "sd-turbo", "sdxl-lightning")):
        if hint.name == "sdxl-lightning" and base == "sdxl":
            return Family("sdxl-lightning", base, f"{source} (SDXL) and its name `{name}`")
        turbo = "sdxl-turbo" if base == "sdxl" else "sd-turbo"
        why = "its scheduler's trailing timestep spacing" if trailing else f"its name `{name}`"
        return Family(turbo, base, f"{source} ({TITLES[base if base == 'sdxl' else 'sd21']}) and {why}")
    if hint.name == "lcm" and hint.base == base:
        return Family("lcm", base, f"{source} and its name `{name}`")
    if base == "sd21":
        v = sched.get("prediction_type") == "v_prediction"
        return Family("sd21-v" if v else "sd21", base, f"{source} (prediction_type "
                      f"{sched.get('prediction_type', 'epsilon')})")
    return Family(base, base, source)


# ---- single files ----------------------------------------------------------------------------------------

UNET_X = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
XL_CLIP_L = "conditioner.embedders.0.transformer."
XL_OPEN_CLIP = "conditioner.embedders.1.model."
XL_REFINER = "conditioner.embedders.0.model."


FLOW_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.", "model.")  # ComfyUI, SAI, diffusers


def _flow_from_keys(shapes: dict[str, list[int]], name: str, metadata: dict) -> Family | None:
    """SD3 / SD3.5 or Flux from a single file's transformer keys, in the original layout (SD3:
    `joint_blocks.*`; Flux: `double_blocks.*`, `guidance_in.*` on [dev]) or diffusers' (SD3:
    `transformer_blocks.*.attn.add_q_proj`; Flux: `single_transformer_blocks.*`,
    `time_text_embed.guidance_embedder.*` on [dev]), under any of FLOW_PREFIXES; None for neither."""
    keys: dict[str, list[int]] = {}
    for k, shape in shapes.items():
        for prefix in FLOW_PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        keys[k] = shape
    stem = Path(name).stem
    n = stem.lower().replace("_", "-")
    told = "its weights' keys"

    def starts(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if starts("double_blocks.") or starts("single_transformer_blocks."):
        bfl = starts("double_blocks.")
        channels = (keys.get("img_in.weight") if bfl else keys.get("x_embedder.weight")) or [0, FLUX_CHANNELS]
        edit = flux_edit_model(n)
        if edit is None and len(channels) > 1 and int(channels[1]) != FLUX_CHANNELS:
            edit = f"a Flux model of {channels[1]} input channels (Fill or a control model)"
        if edit is not None:
            raise UnsupportedModel(f"{name} is {edit}; {RENDERED}", _HELP)
        dev = starts("guidance_in." if bfl else "time_text_embed.guidance_embedder.")
        if dev and "kontext" in n:  # Kontext's weights are [dev]'s in shape: its name tells it
            return Family("flux-kontext", "flux", f"{told} (Flux, a guidance embedding) and its name")
        return Family("flux-dev" if dev else "flux-schnell", "flux",
                      f"{told} (Flux, {'a' if dev else 'no'} guidance embedding)")
    sai = starts("joint_blocks.")
    if not (sai or any(k.startswith("transformer_blocks.") and ".attn.add_q_proj" in k for k in keys)):
        return None
    block = r"joint_blocks\.(\d+)\." if sai else r"transformer_blocks\.(\d+)\."
    layers = len({m.group(1) for k in keys if (m := re.match(block, k))})
    spec = " ".join(str(metadata.get(f"modelspec.{f}", "")) for f in ("architecture", "title")).lower()
    if any(".attn2." in k for k in keys):
        variant, how = "3.5-medium", "dual-attention blocks"
    elif layers == 38:
        variant, how = "3.5-large", "38 blocks"
    elif layers == 24 and not any(k.endswith(("attn.ln_q.weight", "attn.norm_q.weight")) for k in keys):
        variant, how = "3-medium", "24 blocks without qk-norm"
    else:
        variant, how = sd3_variant(spec) or sd3_variant(n), "its metadata or name"
    if "turbo" in spec or "turbo" in n:
        return Family("sd35-turbo", "sd3", f"{told} (SD3) and its {'metadata' if 'turbo' in spec else 'name'}",
                      False, "3.5-large")
    return Family("sd3", "sd3", f"{told} (SD3{', ' + how if variant else ''})", False, variant)


def safetensors_header(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """(key -> shape, metadata) from a .safetensors header, without reading a weight. A file that is not
    one (too short, a length past the file's end or above MAX_HEADER, not JSON) is UserError."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a header")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise ValueError(f"a header of {n} bytes in a file of {size}")
            table = json.loads(f.read(n).decode("utf-8"))
    except RecursionError:  # json's parser recurses: a header of deeply nested lists is not a model's
        raise UserError(f"{shown(path)} is not a readable .safetensors file: its header is nested too deeply",
                        "download the file again") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        why = (e.strerror or e) if isinstance(e, OSError) else e
        raise UserError(f"{shown(path)} is not a readable .safetensors file: {why}",
                        "download the file again") from None
    if not isinstance(table, dict):
        raise UserError(f"{shown(path)} is not a readable .safetensors file: its header is not a table",
                        "download the file again")
    meta = table.pop("__metadata__", None)
    shapes = {k: list(v.get("shape", [])) for k, v in table.items() if isinstance(v, dict)}
    return shapes, meta if isinstance(meta, dict) else {}


def family_from_keys(shapes: dict[str, list[int]], name: str, metadata: dict | None = None) -> Family | None:
    """The family of a single-file checkpoint from its keys and shapes (SD3 / Flux by their transformer's
    blocks; SD 1.x / 2.x by the width of the UNet's cross-attention, 768 or 1024; SDXL by its two
    embedders), refined by its metadata (SAI's
    `modelspec.*`) and its name; None when the keys are of no known family. An inpainting UNet (9 input
    channels) or an SDXL refiner is UnsupportedModel."""
    metadata = metadata or {}
    flow = _flow_from_keys(shapes, name, metadata)
    if flow is not None:
        return flow
    if UNET_IN in shapes and len(shapes[UNET_IN]) > 1 and int(shapes[UNET_IN][1]) != 4:
        raise UnsupportedModel(f"{name} is an inpainting model (a UNet of {shapes[UNET_IN][1]} input channels); "
                               "dfm renders text-to-image models", "use a text-to-image checkpoint")
    keys = shapes.keys()
    if any(k.startswith("conditioner.embedders.") for k in keys):
        if any(k.startswith(XL_REFINER) for k in keys):
            raise UnsupportedModel(f"{name} is an SDXL refiner; dfm renders SDXL base models",
                                   "use an SDXL base checkpoint")
        if not (any(k.startswith(XL_OPEN_CLIP) for k in keys) and any(k.startswith(XL_CLIP_L) for k in keys)):
            return None
        base = "sdxl"
    elif UNET_X in shapes and shapes[UNET_X]:
        base = {768: "sd15", 1024: "sd21"}.get(int(shapes[UNET_X][-1]))
        if base is None:
            return None
    else:
        return None
    if any(k.endswith(("time_embedding.cond_proj.weight", "time_embed.cond_proj.weight")) for k in keys):
        return Family("lcm", base, "its UNet has a guidance-embedding projection (time_cond_proj_dim)")
    title = str(metadata.get("modelspec.title", "")).lower()
    sched: dict = {"timestep_spacing": "trailing"} if "turbo" in title else {}
    fam = _refine(base, {}, sched, Path(name).stem, "its weights' keys")
    if base != "sd21" or fam.name != "sd21":
        return fam
    # SD 2.x files do not say which prediction they were trained for (A1111 runs the model to find out):
    # SAI's metadata, a `v_pred` marker key (ComfyUI, A1111) or the name says; else the 768-v model,
    # which is what dfm's shipped SD 2.x skeleton describes.
    pred = str(metadata.get("modelspec.prediction_type", "")).lower()
    if pred or "v_pred" in keys:
        v = "v_pred" in keys or pred.startswith("v")
        return Family("sd21-v" if v else "sd21", base, "its weights' keys and "
                      + ("its v_pred key" if "v_pred" in keys else f"its metadata (prediction_type {pred})"))
    epsilon = "base" in name.lower() or "512" in name
    return Family("sd21" if epsilon else "sd21-v", base, "its weights' keys (SD 2.x); whether it predicts v is "
                  f"a guess from its name `{name}`", True)


def file_family(path: Path) -> Family:
    """The family of a single-file checkpoint: its config folder next to it (model_index.json) if any,
    else its .safetensors header, else (a pickle checkpoint, which cannot be read without torch; or keys
    of no known family) its name, as a guess."""
    here = path.parent
    if (here / "model_index.json").is_file():
        return folder_family(here, f"the config folder next to {path.name}")
    if path.suffix.lower() == ".safetensors":
        st = path.stat()
        fam = _header_family(str(path), st.st_size, st.st_mtime_ns)
        if fam is not None:
            return fam
        return family_from_name(path.stem, f"a guess from the name `{path.name}` (its keys are of no known family)")
    return family_from_name(path.stem, f"a guess from the name `{path.name}` (a pickle checkpoint is not read "
                                       "before the render)")


@functools.lru_cache(maxsize=32)
def _header_family(path: str, size: int, mtime_ns: int) -> Family | None:
    """family_from_keys of a file's header, cached by (path, size, mtime): the language server checks the
    scene on every edit, and an SDXL header is ~200 kB of JSON."""
    shapes, meta = safetensors_header(Path(path))
    return family_from_keys(shapes, Path(path).name, meta)


# ---- hub ids -----------------------------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub finds it (HF_HUB_CACHE, else HF_HOME/hub, else
    XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub), without importing it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub model (the `main` ref, else any snapshot) holding a
    model_index.json, or None. Only the disk is read."""
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    try:
        ref = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        ref = ""
    candidates = [snaps / ref] if ref else []
    try:
        candidates += sorted(p for p in snaps.iterdir() if p.is_dir())
    except OSError:
        pass
    for c in candidates:
        if (c / "model_index.json").is_file():
            return c
    return None


def hub_family(repo_id: str) -> Family:
    """The family of a hub id: from its snapshot in the local cache if there is one, else its name."""
    snap = cached_snapshot(repo_id)
    if snap is not None:
        return folder_family(snap, f"hub model {repo_id}", name=repo_id, source="its cached model_index.json")
    return family_from_name(repo_id, f"a guess from the hub id `{repo_id}`, which is not in the local Hugging Face "
                                     "cache")


def source_family(spec: str, base_dir: Path | None = None) -> Family:
    """The family of what a scene's `model` (or `--model`) names: a folder, a file or a hub id. A path
    that does not exist is guessed from its name (the compiler has warned that it is missing)."""
    raw = Path(os.path.expanduser(spec))
    path = raw if raw.is_absolute() or base_dir is None else base_dir / raw
    kind = kind_of(path)  # a path the OS refuses is a FileError naming it
    if kind == "folder":
        return folder_family(path)
    if kind == "file":
        return file_family(path)
    if re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", spec) and not spec.startswith("."):
        return hub_family(spec)
    return family_from_name(Path(spec).stem, f"a guess from the name `{spec}` (not found)")


__all__ = ["BASES", "DEFAULTS", "FAMILIES", "FLOW_BASES", "FLOW_PARTS_REPOS", "FLOW_SAMPLER", "Family",
           "UnsupportedModel", "family_from_keys", "family_from_name", "file_family", "flow_parts_repo",
           "folder_family", "hub_family", "safetensors_header", "source_family"]
