"""ControlNet at render time: a unit's model loaded beside the SD model, and the residuals the units add to
each UNet call of a frame's denoise.

A unit (contract/controlnet.py) is a ControlNet model, a control image per frame (runtime/control_images.py)
and three per-frame columns: `cn_N_weight` (diffusers' conditioning scale), `cn_N_guidance_start` and
`cn_N_guidance_end` (the fraction of the frame's steps it acts on, as diffusers computes it). Each is called on
exactly what the UNet gets (latents, timestep, text embeddings, SDXL's pooled embedding and time ids), and the
units' residuals are summed as diffusers' MultiControlNetModel sums them. Control modes follow
sd-webui-controlnet: "balanced" uses the residuals as they are; "prompt" scales the k-th (12 down, then mid)
by 0.825^(12 - k), so the deep ones weigh most and the shallow ones about a tenth; "control" does the same and
zeroes them on the unconditional batch items, so the guidance pushes towards the control. A mask multiplies
a unit's residuals. A frame whose units are all at weight 0 (or off at every step) calls no ControlNet and
is the same bytes as a frame without ControlNet.

Flux.1 (diffusers' FluxControlNetModel: InstantX / Shakker-Labs, XLabs with its `input_hint_block`, Union Pro's
modes) runs inside flow_matching.py's loop as FluxControlNetImg2ImgPipeline runs it: the control image VAE-encoded
(the posterior mean, shifted and scaled, as `StableDiffusion.encode_image`) and packed, or as pixels in [-1, 1]
for an `input_hint_block`; each unit on at a step called on the transformer's own inputs (`FluxInputs`) with
`conditioning_scale` = its weight; the units' block samples summed (FluxMultiControlNetModel) and added inside
the transformer (`FluxSamples`). A mask multiplies a unit's samples token by token; the control modes are
UNet residual scalings and leave a Flux unit as it is (the check warns).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..contract.controlnet import (
    CONTROL_MODES,
    FLUX_UNION_MODES,
    UNION_TYPES,
    XLABS_LAYOUT_HELP,
    XLABS_LAYOUT_WHY,
    UnitSettings,
    active_units,
    column,
    control_folder,
    transformer_controlnet_base,
)
from ..contract.errors import UserError
from ..contract.families import safetensors_header
from ..contract.table import FrameTable, Settings
from .errors import RenderError
from .flow_matching import FluxInputs, FluxSamples, pack_latents, sum_samples, token_mask
from .model_source import HUB_ID, PICKLE_SUFFIXES, fetch_snapshot, first_line
from .models import StableDiffusion, quiet_loading
from .samplers import Residuals

# sd-webui-controlnet's soft injection ("prompt" and "control" modes): residual k of 13 scaled by 0.825^(12-k)
SOFT_DECAY = 0.825
SOFT_DEPTH = 12
LOAD_HELP = ("point the unit's model at a diffusers ControlNet folder (config.json + "
             "diffusion_pytorch_model.safetensors), a ControlNet .safetensors file, or a hub id in the local cache")
HUB_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]
# what a ControlNet is for (`controlnet_family`), as the messages name it
FAMILY_TITLES = {"flux": "Flux.1", "sd3": "SD3", "sd": "SD 1.x / SDXL (a UNet's)"}
FLUX_EXAMPLE = "InstantX/FLUX.1-dev-Controlnet-Canny"


# ---- loading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedControlNet:
    """A unit's model, loaded and placed like the UNet, with where it came from (for the manifest)."""

    spec: str  # what the scene wrote
    kind: str  # "folder" | "file" | "hub"
    path: Path  # the folder, file or hub snapshot it was read from
    net: torch.nn.Module  # a diffusers ControlNetModel


def controlnet_config(unet) -> dict:
    """The config of a ControlNet of `unet`'s architecture (diffusers' `from_unet` mapping, built on the meta
    device: no weights are made). A single .safetensors file names no config, and the hub is not asked for one."""
    from diffusers import ControlNetModel

    with torch.device("meta"), quiet_loading():
        net = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    return {k: v for k, v in dict(net.config).items() if not k.startswith("_")} | {"_class_name": "ControlNetModel"}


def resolve(spec: str, n: int, allow_pickle: bool) -> tuple[str, Path]:
    """(kind, path) of unit n's model: an existing file or folder, or a hub id found in the local cache."""
    path = Path(spec).expanduser()
    where = f"ControlNet unit {n}: model {spec}"
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            raise RenderError(f"{where} is a pickle file, which can run code when loaded",
                              "convert it to .safetensors, or pass --allow-pickle if you trust the file")
        return "file", path.resolve()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RenderError(f"{where} is a folder without config.json, not a diffusers ControlNet", LOAD_HELP)
        return "folder", path.resolve()
    if path.is_absolute() or spec.startswith((".", "~")) or not HUB_ID.match(spec):
        raise RenderError(f"{where} does not exist", f"check the path, or {LOAD_HELP}")
    patterns = HUB_FILES + (["diffusion_pytorch_model.bin"] if allow_pickle else [])
    return "hub", fetch_snapshot(spec, patterns, f"ControlNet (unit {n})", LOAD_HELP)


def unit_weight_files(table: FrameTable, allow_pickle: bool) -> list[Path]:
    """The .safetensors files of the table's units' models (what `offload auto` counts beside the model)."""
    files = []
    for u in active_units(table.settings):
        kind, path = resolve(u.model, u.number, allow_pickle)
        files += [path] if kind == "file" else sorted(path.glob("*.safetensors"))
    return files


def load_controlnet(sd: StableDiffusion, spec: str, n: int) -> LoadedControlNet:
    """Unit n's model `spec` read from disk, in the UNet's dtype on its device, checked to fit the UNet; any
    failure is a RenderError naming the unit, the model and what to do."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    kind, path = resolve(spec, n, sd.allow_pickle)
    dtype = sd.placement.dtype
    made_for = controlnet_family(kind, path)
    check_family(made_for, sd, spec, n, pickle=kind == "file" and path.suffix.lower() in PICKLE_SUFFIXES)
    if sd.family == "flux":
        return LoadedControlNet(spec, kind, path, load_flux_controlnet(sd, kind, path, spec, n))
    union = kind != "file" and _is_union_folder(path)
    if kind == "file" and _is_union_file(path):
        raise RenderError(f"ControlNet unit {n}: {spec} is a ControlNet Union as a single file",
                          "use its diffusers folder (config.json beside the weights), as the hub id gives it")
    try:
        with quiet_loading():
            if kind == "file":
                net = _from_single_file(ControlNetModel, path, sd, dtype)
            else:
                cls = ControlNetUnionModel if union else ControlNetModel
                net = cls.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                          use_safetensors=None if sd.allow_pickle else True)
    except RenderError:
        raise
    except Exception as e:  # diffusers raises OSError/ValueError/KeyError/RuntimeError/EnvironmentError here
        help = f"check that it is a ControlNet for this model's family ({sd.family}), or {LOAD_HELP}"
        raise RenderError(f"ControlNet unit {n}: could not load {spec}: {first_line(e)}", help) from None
    net = net.to(sd.placement.device).eval().requires_grad_(False)
    check_fits(net, sd, spec, n)
    return LoadedControlNet(spec, kind, path, net)


def controlnet_family(kind: str, path: Path) -> str | None:
    """What a ControlNet on disk is for: "flux" (diffusers' FluxControlNetModel; "flux-xlabs" for XLabs' own
    file layout), "sd3" (SD3ControlNetModel) or "sd" (a UNet's: SD 1.x, 2.x, SDXL), from a folder's
    config.json or a .safetensors file's keys (no weights read); None when neither says (a pickle file)."""
    if kind != "file":
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError):
            return None
        if not isinstance(config, dict):
            return None
        name = str(config.get("_class_name", ""))
        if name == "FluxControlNetModel" or "num_single_layers" in config:
            return "flux"
        if name == "SD3ControlNetModel":
            return "sd3"
        return "sd" if name.startswith("ControlNet") or "cross_attention_dim" in config else None
    if path.suffix.lower() != ".safetensors":
        return None
    keys = _file_keys(path)
    if keys is None:
        return None
    return transformer_controlnet_base(keys) or "sd"


def _file_keys(path: Path) -> list[str] | None:
    try:
        return list(safetensors_header(path)[0])
    except UserError:  # not a readable safetensors file: its loading says why
        return None


def check_family(made_for: str | None, sd: StableDiffusion, spec: str, n: int, *, pickle: bool = False) -> None:
    """A RenderError, naming both families, when unit n's ControlNet is not for the model's family: a Flux
    ControlNet with an SD model, an SD (or SD3) ControlNet with Flux. None (not told) passes: loading says."""
    flux_net = made_for in ("flux", "flux-xlabs")
    if sd.family == "flux":
        if made_for is None and pickle:
            raise RenderError(f"ControlNet unit {n}: {spec} does not say it is a Flux.1 ControlNet (a pickle file)",
                              "use a diffusers FluxControlNetModel folder, or its .safetensors file")
        if made_for is not None and not flux_net:
            raise RenderError(f"ControlNet unit {n}: {spec} is an {FAMILY_TITLES[made_for]} ControlNet, but the model "
                              "is Flux.1", f"use a Flux.1 ControlNet (a FluxControlNetModel, e.g. {FLUX_EXAMPLE})")
        if made_for == "flux-xlabs":
            raise RenderError(f"ControlNet unit {n}: {spec} is {XLABS_LAYOUT_WHY}", XLABS_LAYOUT_HELP)
        return
    if flux_net or made_for == "sd3":
        title = FAMILY_TITLES["flux" if flux_net else "sd3"]
        raise RenderError(f"ControlNet unit {n}: {spec} is a {title} ControlNet, but the model is {sd.family}",
                          f"use a ControlNet trained for this model's family ({sd.family})")


# the FluxControlNetModel settings a file's keys or the model's transformer give
FLUX_CONFIG_KEYS = ("patch_size", "in_channels", "num_layers", "num_single_layers", "attention_head_dim",
                    "num_attention_heads", "joint_attention_dim", "pooled_projection_dim", "guidance_embeds",
                    "axes_dims_rope", "num_mode", "conditioning_embedding_channels")


def flux_file_config(path: Path, transformer_config) -> dict:
    """The config of a Flux ControlNet file in diffusers' key names (diffusers has no single-file loader for
    them): its block counts, widths, guidance embedding, modes and control-image embedding read from the
    header, the rest (heads, rotary axes) from the Flux transformer it is for."""
    shapes, _ = safetensors_header(path)

    def count(prefix: str) -> int:
        return len({k.split(".")[1] for k in shapes if k.startswith(prefix + ".")})

    def width(key: str, axis: int, default=None):
        return int(shapes[key][axis]) if key in shapes else default

    config = {k: v for k, v in dict(transformer_config).items() if k in FLUX_CONFIG_KEYS}
    hint = width("input_hint_block.conv_out.weight", 0)
    if hint:  # the hint's channels in patches: controlnet_x_embedder reads hint x patch^2 features
        config["patch_size"] = math.isqrt(width("controlnet_x_embedder.weight", 1, hint) // hint)
    return config | {
        "num_layers": count("transformer_blocks"), "num_single_layers": count("single_transformer_blocks"),
        "in_channels": width("x_embedder.weight", 1, config.get("in_channels")),
        "joint_attention_dim": width("context_embedder.weight", 1, config.get("joint_attention_dim")),
        "pooled_projection_dim": width("time_text_embed.text_embedder.linear_1.weight", 1,
                                       config.get("pooled_projection_dim")),
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
        "num_mode": width("controlnet_mode_embedder.weight", 0),
        "conditioning_embedding_channels": hint,
    }


def load_flux_controlnet(sd: StableDiffusion, kind: str, path: Path, spec: str, n: int) -> torch.nn.Module:
    """Unit n's FluxControlNetModel: a diffusers folder (or hub snapshot), or a .safetensors file in diffusers'
    key names (its config from `flux_file_config`), in the transformer's dtype on its device, checked to fit it."""
    from diffusers import FluxControlNetModel
    from safetensors.torch import load_file

    dtype = sd.placement.dtype
    try:
        with quiet_loading():
            if kind == "file":
                with torch.device("meta"):
                    net = FluxControlNetModel.from_config(flux_file_config(path, sd.unet.config))
                net.load_state_dict(load_file(str(path)), strict=True, assign=True)
                net = net.to(dtype)
            else:
                net = FluxControlNetModel.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                                          use_safetensors=None if sd.allow_pickle else True)
    except Exception as e:  # diffusers raises OSError/ValueError/KeyError/RuntimeError here
        help = f"check that it is a Flux.1 ControlNet (FluxControlNetModel), or {LOAD_HELP}"
        raise RenderError(f"ControlNet unit {n}: could not load {spec}: {first_line(e)}", help) from None
    net = net.to(sd.placement.device).eval().requires_grad_(False)
    check_flux_fits(net, sd, spec, n)
    return net


def check_flux_fits(net, sd: StableDiffusion, spec: str, n: int) -> None:
    """A Flux ControlNet's samples have the transformer's widths (they are added to its hidden states), and it
    reads the same latents and text, or a RenderError naming the mismatch."""
    t = sd.unet.config

    def inner(c) -> int:
        return int(c.num_attention_heads) * int(c.attention_head_dim)

    for what, want, got in (("width (heads x head dim)", inner(t), inner(net.config)),
                            ("in_channels", t.in_channels, net.config.in_channels),
                            ("joint_attention_dim", t.joint_attention_dim, net.config.joint_attention_dim),
                            ("pooled_projection_dim", t.pooled_projection_dim, net.config.pooled_projection_dim)):
        if int(want) != int(got):
            raise RenderError(f"ControlNet unit {n}: {spec} does not fit the model: its {what} is {got}, the Flux "
                              f"transformer's is {want}", "use a ControlNet trained for this Flux.1 model")


def _is_union_folder(path: Path) -> bool:
    try:
        return '"ControlNetUnionModel"' in (path / "config.json").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _is_union_file(path: Path) -> bool:
    return path.suffix.lower() == ".safetensors" and "task_embedding" in (_file_keys(path) or ())


def is_union(net: torch.nn.Module) -> bool:
    """A ControlNet Union takes a list of control images and a one-hot control type."""
    return hasattr(net, "task_embedding")


def _from_single_file(cls, path: Path, sd: StableDiffusion, dtype: torch.dtype):
    """A ControlNet file (original layout, or diffusers' keys): its config is the one beside it, or that of a
    ControlNet of the SD model's own UNet (what a ControlNet trained for the model has), with the widths of
    the file's own control-image embedding."""
    here = path.parent / "config.json"
    if here.is_file() and '"ControlNetModel"' in here.read_text(encoding="utf-8", errors="replace"):
        return cls.from_single_file(str(path), config=str(path.parent), local_files_only=True, torch_dtype=dtype)
    config = controlnet_config(sd.unet)
    widths = cond_embedding_widths(path)
    if widths:
        config["conditioning_embedding_out_channels"] = widths
    with tempfile.TemporaryDirectory(prefix="dfm-controlnet-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        return cls.from_single_file(str(path), config=tmp, local_files_only=True, torch_dtype=dtype)


def cond_embedding_widths(path: Path) -> list[int] | None:
    """The widths of the control-image embedding of a .safetensors ControlNet in diffusers' key names (read
    from the header, no weights); None for another layout (the original one has real ControlNets' widths,
    the only ones diffusers' converter reads)."""
    if path.suffix.lower() != ".safetensors":
        return None
    prefix = "controlnet_cond_embedding."
    shapes = {k: v for k, v in safetensors_header(path)[0].items() if k.startswith(prefix) and k.endswith(".weight")}
    if prefix + "conv_in.weight" not in shapes:
        return None
    # blocks come in pairs (a conv at the width, then a stride-2 conv to the next): each pair's second is a width
    blocks = [int(k.split(".")[2]) for k in shapes if k.startswith(prefix + "blocks.")]
    strided = sorted(b for b in blocks if b % 2)
    return [shapes[prefix + "conv_in.weight"][0]] + [shapes[f"{prefix}blocks.{b}.weight"][0] for b in strided]


def check_fits(net, sd: StableDiffusion, spec: str, n: int) -> None:
    """The ControlNet's residuals have the UNet's shapes (same block widths, cross-attention width and added
    conditioning), or a RenderError saying which model family it is for."""
    def plain(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    for key in ("block_out_channels", "layers_per_block", "cross_attention_dim", "addition_embed_type"):
        want, got = plain(sd.unet.config.get(key)), plain(net.config.get(key))
        if want != got:
            raise RenderError(
                f"ControlNet unit {n}: {spec} does not fit the model: its {key} is {got}, the UNet's is {want}",
                f"use a ControlNet trained for this model's family ({sd.family})",
            )


def controlnet_for(sd: StableDiffusion, unit: UnitSettings) -> LoadedControlNet:
    """The loaded model of `unit`, loaded on first use and kept with `sd` (units sharing a model share it)."""
    found = sd.controlnets.get(unit.model)
    if found is None:
        found = load_controlnet(sd, unit.model, unit.number)
        sd.controlnets[unit.model] = found
    return found  # type: ignore[return-value]  # only this module fills sd.controlnets


def load_units(table: FrameTable, sd: StableDiffusion) -> tuple[LoadedControlNet, ...]:
    """Load every active unit's model (the render's load stage): a missing or broken file fails here."""
    return tuple(controlnet_for(sd, u) for u in active_units(table.settings))


def describe_units(table: FrameTable, sd: StableDiffusion) -> list[dict]:
    """What each unit of a render used, for the manifest: its model (as written, where it was read from) and
    its preprocessor and modes."""
    out = []
    for u in active_units(table.settings):
        loaded = sd.controlnets.get(u.model)
        out.append({
            "unit": u.number, "model": u.model,
            "kind": loaded.kind if loaded is not None else None,  # type: ignore[attr-defined]
            "path": str(loaded.path) if loaded is not None else None,  # type: ignore[attr-defined]
            "module": u.module, "source": u.source, "mask": u.mask, "loopback": u.loopback,
            "control_mode": u.control_mode, "resize_mode": u.resize_mode,
            **({"union_type": u.union_type} if u.union_type else {}),
        })
    return out


# ---- the residuals: small functions over tensors -----------------------------------------------------------


def unit_on(index: int, n: int, start: float, end: float) -> bool:
    """Whether a unit acts at loop index `index` of `n` steps: diffusers' guidance window
    (`not (i / n < start or (i + 1) / n > end)`)."""
    return not (index / n < start or (index + 1) / n > end)


def soft_scales(count: int) -> list[float]:
    """sd-webui-controlnet's soft-injection factors of `count` residuals (12 down + mid for SD 1.x): residual k
    is scaled by 0.825^(12 - k). As there, a model with fewer (SDXL's 9 + mid) takes the first `count`."""
    return [SOFT_DECAY ** float(SOFT_DEPTH - k) for k in range(count)]


def resized_mask(mask: Tensor, like: Tensor) -> Tensor:
    """`mask` (1, 1, H, W) averaged down to `like`'s spatial size, in its dtype (broadcasts over the batch
    and the channels)."""
    if tuple(mask.shape[-2:]) != tuple(like.shape[-2:]):
        mask = torch.nn.functional.interpolate(mask.float(), size=tuple(like.shape[-2:]), mode="area")
    return mask.to(device=like.device, dtype=like.dtype)


def shape_residuals(res: Residuals, mode: str, uncond: Tensor, mask: Tensor | None) -> Residuals:
    """One unit's residuals as its control mode and mask make them (see the module's docstring)."""
    if mode not in CONTROL_MODES:
        raise RenderError(f"unknown ControlNet control mode {mode!r}", f"use one of {', '.join(CONTROL_MODES)}")
    tensors = [*res.down, res.mid]
    if mode in ("prompt", "control"):
        tensors = [r * s for r, s in zip(tensors, soft_scales(len(tensors)), strict=True)]
    if mode == "control":  # sd-webui-controlnet's cfg injection: the negative pass gets no control
        keep = (~uncond.bool()).to(device=tensors[0].device, dtype=tensors[0].dtype).view(-1, 1, 1, 1)
        tensors = [r * keep for r in tensors]
    if mask is not None:
        tensors = [r * resized_mask(mask, r) for r in tensors]
    return Residuals(tuple(tensors[:-1]), tensors[-1])


# ---- one frame's control ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitInput:
    """One unit on one frame: its model, its control image (1, 3, H, W) and mask (1, 1, H, W) in [0, 1], and
    the row's weight and guidance window."""

    number: int
    net: torch.nn.Module
    image: Tensor
    mask: Tensor | None
    weight: float
    start: float
    end: float
    mode: str
    union_index: int | None = None  # a ControlNet Union's control type (contract UNION_TYPES index)


# (latents, embeddings) -> (latents, hidden states, keyword arguments) as the UNet takes them
UnetInputs = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, dict]]


class FrameControl:
    """The ControlNet residuals of one frame's denoise (`samplers.Control`): each unit on at a step is called
    on the UNet's own inputs, and their shaped residuals are summed. Holds the control image repeated to each
    batch size met (the state worth keeping between the steps)."""

    def __init__(self, units: Sequence[UnitInput], unet_inputs: UnetInputs) -> None:
        self.units = tuple(units)
        self.unet_inputs = unet_inputs
        self.calls = 0  # ControlNet calls made
        self._images: dict[tuple[int, int], Tensor] = {}

    def on(self, index: int, n: int) -> bool:
        return any(unit_on(index, n, u.start, u.end) for u in self.units)

    def residuals(self, index: int, n: int, latents: Tensor, t: Tensor, embeddings: Tensor,
                  uncond: Tensor) -> Residuals | None:
        live = [u for u in self.units if unit_on(index, n, u.start, u.end)]
        if not live:
            return None
        x, hidden, kw = self.unet_inputs(latents, embeddings)
        total: Residuals | None = None
        for u in live:
            image = self._image(u, x.shape[0])
            if u.union_index is None:
                down, mid = u.net(x, t, encoder_hidden_states=hidden, controlnet_cond=image,
                                  conditioning_scale=u.weight, return_dict=False, **kw)
            else:  # as diffusers' union pipelines call it: the image in its type's slot, the type one-hot
                down, mid = u.net(x, t, encoder_hidden_states=hidden, controlnet_cond=[image],
                                  control_type=self._control_type(u, x.shape[0]), control_type_idx=[u.union_index],
                                  conditioning_scale=u.weight, return_dict=False, **kw)
            self.calls += 1
            res = shape_residuals(Residuals(tuple(down), mid), u.mode, uncond, u.mask)
            total = res if total is None else total + res
        return total

    def _control_type(self, u: UnitInput, batch: int) -> Tensor:
        onehot = torch.zeros(1, int(u.net.config.num_control_type), device=u.image.device, dtype=u.net.dtype)
        onehot[0, int(u.union_index)] = 1
        return onehot.repeat(batch, 1)

    def _image(self, u: UnitInput, batch: int) -> Tensor:
        key = (u.number, batch)
        if key not in self._images:  # as diffusers' prepare_control_image: the one image for every item
            self._images[key] = u.image.to(dtype=u.net.dtype).repeat(batch, 1, 1, 1)
        return self._images[key]


# ---- what a renderer keeps: each unit's images -------------------------------------------------------------


@dataclass(frozen=True)
class RendererUnit:
    """An active unit of a render: its settings and its control images (runtime/control_images.py)."""

    unit: UnitSettings
    images: object  # a ControlImages: image(i, loopback) and mask(i)


def open_images(unit: UnitSettings, settings: Settings, width: int, height: int, device: torch.device, *,
                depth=None, save_dir: Path | None = None, frame_count: int | None = None):
    """The control images of `unit` (runtime/control_images.py), imported only for a scene with units."""
    from .control_images import ControlImages

    return ControlImages(unit, settings, width, height, device, depth=depth, save_dir=save_dir,
                         frame_count=frame_count)


def renderer_units(table: FrameTable, device: torch.device, *, depth=None,
                   save_dir: Path | None = None) -> tuple[RendererUnit, ...]:
    """The table's active units, each with its control images (saved in `save_dir`/controlnet_N/ when given);
    () without units. A table missing a unit's columns is refused here, before any frame."""
    units = active_units(table.settings)
    missing = [column(u.number, f) for u in units for f in ("weight", "guidance_start", "guidance_end")
               if column(u.number, f) not in table]
    if missing:
        raise RenderError(f"the table has ControlNet units but no {', '.join(missing)} column", "recompile the scene "
                          "with this dfm (`dfm compile`)")
    s = table.settings
    return tuple(RendererUnit(u, open_images(u, s, s.width, s.height, device, depth=depth,
                                             save_dir=save_dir / control_folder(u.number) if save_dir else None,
                                             frame_count=len(table))) for u in units)


def union_index(unit: UnitSettings, net: torch.nn.Module) -> int | None:
    """A Union unit's control type index (None for a plain ControlNet); a Union without a type is an error."""
    if not is_union(net):
        return None
    if unit.union_type not in UNION_TYPES:
        raise RenderError(f"ControlNet unit {unit.number} is a ControlNet Union without a control type",
                          f"set cn_{unit.number}_union_type to one of {', '.join(UNION_TYPES)}")
    index = UNION_TYPES.index(unit.union_type)
    if index >= int(net.config.num_control_type):
        raise RenderError(f"ControlNet unit {unit.number}: the model has {net.config.num_control_type} control types, "
                          f"not `{unit.union_type}`", "choose another cn_N_union_type")
    return index


def acting_units(units: Sequence[RendererUnit], i: int, row: Mapping[str, object], loopback: Tensor | None):
    """(unit, weight, control image, guidance start, guidance end) of each unit acting on row i: not at weight 0
    (then neither its image nor its model is needed), and with a control image on this frame."""
    for u in units:
        n = u.unit.number
        weight = float(row[column(n, "weight")])
        if weight == 0.0:
            continue
        image = u.images.image(i, loopback)  # type: ignore[attr-defined]
        if image is None:
            continue
        yield u, weight, image, float(row[column(n, "guidance_start")]), float(row[column(n, "guidance_end")])


def frame_control(sd: StableDiffusion, units: Sequence[RendererUnit], i: int, row: Mapping[str, object],
                  loopback: Tensor | None) -> FrameControl | FluxFrameControl | None:
    """The control of diffused row i, or None when no unit acts on it: every unit at weight 0, or without a
    control image on this frame (then no ControlNet runs and the frame is the one without ControlNet).
    `loopback` is the frame's img2img source (None for txt2img), what a loopback unit controls with. A Flux
    model's is a FluxFrameControl (`flux_frame_control`)."""
    if sd.family == "flux":
        return flux_frame_control(sd, units, i, row, loopback)
    inputs = []
    for u, weight, image, start, end in acting_units(units, i, row, loopback):
        net = controlnet_for(sd, u.unit).net
        inputs.append(UnitInput(u.unit.number, net, image, u.images.mask(i),  # type: ignore[attr-defined]
                                weight, start, end, u.unit.control_mode, union_index(u.unit, net)))
    return FrameControl(inputs, sd.unet_inputs) if inputs else None


# ---- Flux.1: one frame's control --------------------------------------------------------------------------


@dataclass(frozen=True)
class FluxUnitInput:
    """One Flux unit on one frame: its model, its control input as the model reads it (`flux_control_input`),
    its mask per image token (1, tokens, 1), the row's weight and guidance window, a Union's mode."""

    number: int
    net: torch.nn.Module  # a diffusers FluxControlNetModel
    cond: Tensor  # (1, tokens, C * 4) packed latents, or (1, 3, H, W) in [-1, 1] for an input_hint_block
    mask: Tensor | None
    weight: float
    start: float
    end: float
    mode: int | None = None  # a Union's controlnet_mode (FLUX_UNION_MODES)


def flux_control_input(sd: StableDiffusion, net: torch.nn.Module, image: Tensor) -> Tensor:
    """A [0, 1] control image (1, 3, H, W) as a Flux ControlNet reads it (FluxControlNetImg2ImgPipeline): XLabs'
    (with an `input_hint_block`) the pixels in [-1, 1]; the others its VAE latents, shifted, scaled and packed
    (the posterior mean, as the frame's own init: no random draw)."""
    if net.input_hint_block is not None:
        return (image * 2 - 1).to(dtype=net.dtype)
    return pack_latents(sd.encode_image(image)).to(dtype=net.dtype)


def flux_union_mode(unit: UnitSettings, net: torch.nn.Module) -> int | None:
    """A Flux ControlNet Union's `controlnet_mode` for the unit's control type (None for a model without
    modes); a Union without a type, or with one it has no mode for, is an error."""
    if net.config.num_mode is None:
        return None
    modes = ", ".join(f"{k} ({v})" for k, v in FLUX_UNION_MODES.items())
    if unit.union_type not in FLUX_UNION_MODES:
        what = f"has no mode for `{unit.union_type}`" if unit.union_type else "needs a control type"
        raise RenderError(f"ControlNet unit {unit.number} is a Flux ControlNet Union and {what}",
                          f"set cn_{unit.number}_union_type to one with a Flux mode: {modes}")
    mode = FLUX_UNION_MODES[unit.union_type]
    if mode >= int(net.config.num_mode):
        raise RenderError(f"ControlNet unit {unit.number}: the model has {net.config.num_mode} modes, not "
                          f"`{unit.union_type}` ({mode})", "choose another cn_N_union_type")
    return mode


def flux_frame_control(sd: StableDiffusion, units: Sequence[RendererUnit], i: int, row: Mapping[str, object],
                       loopback: Tensor | None) -> FluxFrameControl | None:
    """`frame_control` for a Flux model: each acting unit's control image encoded once for the frame."""
    inputs = []
    transformer = sd.unet.config
    for u, weight, image, start, end in acting_units(units, i, row, loopback):
        net = controlnet_for(sd, u.unit).net
        mask = token_mask(u.images.mask(i), image.shape[-2], image.shape[-1], sd.latent_scale)  # type: ignore
        inputs.append(FluxUnitInput(u.unit.number, net, flux_control_input(sd, net, image), mask, weight, start,
                                    end, flux_union_mode(u.unit, net)))
    blocks = (int(transformer.num_layers), int(transformer.num_single_layers))
    return FluxFrameControl(inputs, *blocks) if inputs else None


class FluxFrameControl:
    """The Flux ControlNet units of one frame's denoise: `at(k, n)` is step k's (flow_matching.FluxControlFn),
    None when no unit is on at that step. Holds each control input and mode repeated to each batch size met."""

    def __init__(self, units: Sequence[FluxUnitInput], blocks: int, single: int) -> None:
        self.units = tuple(units)
        self.blocks, self.single = blocks, single  # the transformer's double and single blocks
        self.calls = 0  # ControlNet calls made
        self._batched: dict[tuple[int, int], tuple[Tensor, Tensor | None]] = {}

    def at(self, index: int, n: int):
        live = tuple(u for u in self.units if unit_on(index, n, u.start, u.end))
        if not live:
            return None
        return lambda inputs: self.samples(live, inputs)

    def samples(self, live: Sequence[FluxUnitInput], inputs: FluxInputs) -> FluxSamples:
        parts = []
        for u in live:
            batch = int(inputs.hidden_states.shape[0])
            cond, mode = self._inputs(u, batch)
            dtype = u.net.dtype
            blocks, single = u.net(
                hidden_states=inputs.hidden_states.to(dtype),
                controlnet_cond=cond,
                controlnet_mode=mode,
                conditioning_scale=u.weight,
                timestep=inputs.timestep,
                guidance=self._guidance(u, inputs, batch),
                pooled_projections=inputs.pooled.to(dtype),
                encoder_hidden_states=inputs.embeds.to(dtype),
                txt_ids=inputs.txt_ids,
                img_ids=inputs.img_ids,
                return_dict=False,
            )
            self.calls += 1
            if u.mask is not None:
                m = u.mask.to(device=inputs.hidden_states.device, dtype=dtype)
                blocks = [b * m for b in blocks] if blocks is not None else None
                single = [b * m for b in single] if single is not None else None
            parts.append(FluxSamples(blocks, single, u.net.input_hint_block is not None))
        return sum_samples(parts, self.blocks, self.single)

    @staticmethod
    def _guidance(u: FluxUnitInput, inputs: FluxInputs, batch: int) -> Tensor | None:
        """The guidance scale for a ControlNet that embeds one (its config's guidance_embeds), as the pipeline
        makes it: float32, one per batch item."""
        if not u.net.config.guidance_embeds:
            return None
        if inputs.guidance is None:  # the flow loop passes the row's cfg_scale for every Flux model
            raise RuntimeError(f"ControlNet unit {u.number} embeds a guidance scale, and the frame has none")
        device = inputs.hidden_states.device
        return torch.full([1], float(inputs.guidance), device=device, dtype=torch.float32).expand(batch)

    def _inputs(self, u: FluxUnitInput, batch: int) -> tuple[Tensor, Tensor | None]:
        key = (u.number, batch)
        if key not in self._batched:  # as the pipeline's prepare_image: the one image for every item
            cond = u.cond.repeat(batch, *([1] * (u.cond.dim() - 1)))
            mode = None if u.mode is None else torch.full((batch, 1), u.mode, dtype=torch.long, device=cond.device)
            self._batched[key] = (cond, mode)
        return self._batched[key]


__all__ = ["SOFT_DECAY", "FluxFrameControl", "FluxUnitInput", "FrameControl", "LoadedControlNet", "RendererUnit",
           "UnitInput", "acting_units", "check_family", "controlnet_config", "controlnet_family", "controlnet_for",
           "describe_units", "flux_control_input", "flux_file_config", "flux_frame_control", "flux_union_mode",
           "frame_control", "load_controlnet", "load_flux_controlnet", "load_units", "open_images", "renderer_units",
           "resized_mask", "shape_residuals", "soft_scales", "union_index", "unit_on"]
