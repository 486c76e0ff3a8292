"""The standard speed-ups of the loaded models, each one switchable (issue 14).

- attention: `sdpa` is torch's fused scaled_dot_product_attention through diffusers' AttnProcessor2_0
  (what diffusers installs by default on torch >= 2; `apply` checks that every attention layer has it),
  `math` diffusers' classic AttnProcessor (the explicit softmax(QKᵀ)V, for comparison or old kernels);
- channels_last: the UNet's and the VAE's weights in NHWC memory order (`auto`: on CUDA, where the
  convolutions' tensor-core kernels want it. On the CPU it made the SD1.5 VAE decode 11 % faster here,
  but it changes the frames' last bits (6e-6), so it stays opt-in there: CPU renders keep the bytes of
  earlier versions and of the test suite);
- vae_tiling: the VAE encodes and decodes in overlapping tiles (diffusers' enable_tiling), which bounds
  its memory at large sizes but blends the tiles' seams (`auto`: above TILING_AUTO_PIXELS only);
- compile: torch.compile of the UNet, opt-in; its warm-up (the compilation, at the first calls) runs
  in `apply`, timed as the stage `compile`, so the frame loop's figures are the compiled model's;
- offload: `group` keeps the denoiser (and a flow model's T5 encoder) in CPU memory and moves it to the GPU a
  block at a time as it runs (diffusers' group offloading, on a side stream so the copies overlap the
  compute): Flux.1 in bf16 (33 GB of weights) on a 24 GB card. `auto` offloads only where the model's weights
  would not fit in 85 % of the free GPU memory. The arithmetic is the same, so it is not in the fingerprint;
  the manifest records it.

The dtype (fp16/bf16/fp32) is the placement's: runtime/device.py. VAE slicing is not offered: it splits a
batch into single images, and dfm decodes one image at a time already.

Each switch that changes the arithmetic changes the frames' bytes, so their description goes into the
resume fingerprint (`record`/`recorded`): a render continues only under the switches it began with.
This module imports torch only inside its functions: the CLI reads its options without loading torch.
"""

from __future__ import annotations

import argparse
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import RenderError

ATTENTION = ("sdpa", "math")
SWITCH = ("auto", "on", "off")
OFFLOAD = ("auto", "off", "group")
OFFLOAD_AUTO_FRACTION = 0.85  # offload auto: the weights must fit in this share of the free GPU memory
TILING_AUTO_PIXELS = 1024 * 1024  # vae_tiling auto: tiles for frames with more pixels than 1024²
DTYPE_CHOICES = ("auto", "fp16", "bf16", "fp32")  # runtime/device.py resolves them


@dataclass(frozen=True)
class Speedups:
    """The switches of one render (the defaults are what a plain `dfm render` uses)."""

    attention: str = "sdpa"
    channels_last: str = "auto"
    vae_tiling: str = "auto"
    compile: bool = False
    offload: str = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (("attention", ATTENTION), ("channels_last", SWITCH), ("vae_tiling", SWITCH),
                              ("offload", OFFLOAD)):
            value = getattr(self, name)
            if value not in allowed:
                raise RenderError(f"{name.replace('_', '-')} {value!r} is not known",
                                  "use one of " + ", ".join(allowed))


@dataclass(frozen=True)
class Applied:
    """What `apply` resolved the switches to on this device and size."""

    attention: str  # the attention processor classes found after applying, e.g. "AttnProcessor2_0"
    channels_last: bool
    vae_tiling: bool
    compile: bool
    compile_warmup_s: float = 0.0



def describe(options: Speedups | None, device_type: str, size: tuple[int, int] | None) -> str:
    """The switches as they resolve on this device and size: what the resume fingerprint compares (each
    changes the frames' bytes), known before any model loads."""
    o = options or Speedups()
    on = {True: "on", False: "off"}
    return (f"attention={o.attention} channels_last={on[resolve_channels_last(o.channels_last, device_type)]} "
            f"vae_tiling={on[resolve_tiling(o.vae_tiling, size)]} compile={on[o.compile]}")


# the switches each loaded model runs under (`describe`), by model: kept beside it, not on it (models.py
# owns the model object), gone with it
_RECORDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def record(sd, description: str) -> None:
    """Note the switches `sd` renders under (`describe`): the resume fingerprint reads them. (A test's
    unhashable stand-in for a model records nothing.)"""
    try:
        _RECORDED[sd] = description
    except TypeError:
        pass


def recorded(sd) -> str:
    """The switches recorded for `sd`, "" for a model no render or `apply` has set up."""
    try:
        return _RECORDED[sd] if sd in _RECORDED else ""
    except TypeError:
        return ""


def resolve_channels_last(value: str, device_type: str) -> bool:
    if value == "auto":
        return device_type == "cuda"
    return value == "on"


def resolve_tiling(value: str, size: tuple[int, int] | None) -> bool:
    if value == "auto":
        return size is not None and size[0] * size[1] > TILING_AUTO_PIXELS
    return value == "on"


def weight_bytes(sd, others: Iterable[Path] = ()) -> int:
    """The bytes of the weights a render of `sd` (a StableDiffusion) loads, in its placement's precision, from
    the .safetensors headers (no weight read): what `offload auto` compares with the free GPU memory. `others`:
    weight files loaded beside the model that stay on the GPU (its ControlNets)."""
    import math

    import torch

    from ..contract.errors import UserError
    from ..contract.families import safetensors_header

    itemsize = torch.empty((), dtype=sd.placement.dtype).element_size()
    if sd.folder is None and not sd.is_flow:
        files = [sd.source.path]
    else:
        root = sd.parts_folder if sd.is_flow else sd.folder
        files = sorted(p for p in root.glob("*/*.safetensors") if p.parent.name != "safety_checker")
        if sd.folder is None:  # a single flow file: its own transformer, not a folder's
            files = [p for p in files if p.parent.name != "transformer"] + [sd.source.path]
    total = 0
    for path in [*files, *others]:
        if path.suffix.lower() != ".safetensors":
            continue
        try:
            shapes, _ = safetensors_header(path)
        except UserError:  # unreadable: counted as nothing (the load then says what is wrong)
            continue
        total += sum(math.prod(int(d) for d in shape) for shape in shapes.values()) * itemsize
    return total


def resolve_offload(options: Speedups | None, sd, others: Callable[[], Iterable[Path]] = tuple) -> str:
    """"group" or "off" for `sd` on its device: `auto` offloads on CUDA when the weights its render loads
    (`weight_bytes`, from the files' headers; `others()`: the files of what loads beside it, asked only on CUDA)
    exceed OFFLOAD_AUTO_FRACTION of the free memory."""
    value = (options or Speedups()).offload
    if value != "auto":
        return value
    device = sd.placement.device
    if device.type != "cuda":
        return "off"
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return "group" if weight_bytes(sd, others()) > free * OFFLOAD_AUTO_FRACTION else "off"


def offload_in_groups(module, device, leaf: bool = False) -> None:
    """Keep `module` in CPU memory and move it to `device` a block (`leaf`: a layer) at a time as it runs;
    once per module."""
    if getattr(module, "_dfm_offloaded", False):
        return
    from diffusers.hooks import apply_group_offloading

    stream = device.type == "cuda"  # copies on a side stream overlap the compute (CUDA only)
    if leaf:
        apply_group_offloading(module, onload_device=device, offload_type="leaf_level", use_stream=stream)
    else:
        apply_group_offloading(module, onload_device=device, offload_type="block_level", num_blocks_per_group=1,
                               use_stream=stream)
    module._dfm_offloaded = True


def attention_processors(*modules) -> str:
    """The attention processor classes of every attention layer of `modules`, sorted and joined by '+'."""
    names = set()
    for m in modules:
        procs = getattr(m, "attn_processors", None)
        if procs:
            names.update(type(p).__name__ for p in procs.values())
    return "+".join(sorted(names)) or "none"


def _set_attention(module, kind: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    procs = getattr(module, "attn_processors", None)
    if not procs:
        return
    want = AttnProcessor2_0 if kind == "sdpa" else AttnProcessor
    # only where it differs: a module already on SDPA keeps its processors (and its exact arithmetic);
    # a model with other processors (IP-adapter, LoRA-specific) is left alone
    if all(type(p) in (AttnProcessor, AttnProcessor2_0) for p in procs.values()) and \
            any(type(p) is not want for p in procs.values()):
        module.set_attn_processor(want())


def _memory_format(module, channels_last: bool) -> None:
    import torch

    module.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _set_tiling(vae, on: bool) -> None:
    if hasattr(vae, "enable_tiling"):
        (vae.enable_tiling if on else vae.disable_tiling)()


def _compile_unet(unet, on: bool) -> None:
    if on:
        if getattr(unet, "_compiled_call_impl", None) is None:
            unet.compile()  # in place: sd.unet stays the same module (its config, its hooks)
    elif getattr(unet, "_compiled_call_impl", None) is not None:
        unet._compiled_call_impl = None  # back to eager (nn.Module.compile's own slot)


def _warm_up(sd, size: tuple[int, int], batches: tuple[int, ...]) -> float:
    """Run the compiled UNet once per batch size the render uses (2 with CFG, 1 without), so the
    compilation is not counted in the first frames. SDXL's added conditioning is built by the frame
    loop; its UNet compiles at the first frame instead (counted in `denoise`), as does a batch of
    another size (a composite prompt's parts)."""
    import time

    import torch

    if sd.family == "sdxl" or sd.is_flow:  # their conditioning is built by the frame loop
        return 0.0
    dev, dtype = sd.placement.device, sd.placement.dtype
    scale = sd.latent_scale
    start = time.perf_counter()
    with torch.inference_mode():
        emb = sd.encode_text("")
        sd.text_encoder_calls -= 1  # a warm-up, not the render's
        for b in batches:
            lat = torch.zeros(b, int(sd.unet.config.in_channels), size[1] // scale, size[0] // scale,
                              device=dev, dtype=dtype)
            # the frame loop's own layouts (a concatenated batch, not an expanded view): dynamo guards on
            # strides, and a mismatch would compile again at the first frame
            hidden = torch.cat([emb] * b).to(dtype)
            sd.unet(lat, torch.tensor(999.0, device=dev), encoder_hidden_states=hidden)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - start


def apply(sd, options: Speedups | None = None, *, size: tuple[int, int] | None = None,
          batches: tuple[int, ...] = (2,), timer=None) -> Applied:
    """Apply `options` to the loaded components of `sd` (a StableDiffusion whose UNet and VAE are loaded)
    and record the result (`recorded(sd)`, which the resume fingerprint reads). `size` is the frame size
    (width, height) for vae_tiling auto and the compile warm-up; `batches` the UNet batch sizes the
    render uses. Applying the same options again changes nothing; other options re-apply (a benchmark
    turns switches on and off on one loaded model)."""
    options = options or Speedups()
    dev_type = sd.placement.device.type
    cl = resolve_channels_last(options.channels_last, dev_type)
    tiling = resolve_tiling(options.vae_tiling, size)
    key = (options, cl, tiling, size, batches)
    done = sd.__dict__.get("_dfm_speedups")
    if done is not None and done[0] == key:
        return done[1]
    unet, vae = sd.unet, sd.vae
    # the ControlNets the render loaded (runtime/controlnet.py) run beside the UNet on the same inputs: the
    # same attention kernel and memory format (torch.compile stays the UNet's own)
    nets = [loaded.net for loaded in sd.controlnets.values()]
    for m in (unet, vae, *nets):
        _set_attention(m, options.attention)
        _memory_format(m, cl)
    _set_tiling(vae, tiling)
    _compile_unet(unet, options.compile)
    for name in sd.offloaded_parts:  # after the LoRAs' layers are in: they are offloaded with their blocks
        module = sd.unet if name in ("unet", "transformer") else sd.t5_encoder
        if module is not None:  # (an SD3 folder without its T5)
            offload_in_groups(module, sd.placement.device, leaf=module is not sd.unet)
    warm = 0.0
    if options.compile and size is not None:
        if timer is not None:
            with timer("compile"):
                warm = _warm_up(sd, size, batches)
        else:
            warm = _warm_up(sd, size, batches)
    applied = Applied(attention_processors(unet, vae), cl, tiling, options.compile, round(warm, 3))
    sd.__dict__["_dfm_speedups"] = (key, applied)
    record(sd, describe(options, dev_type, size))
    return applied


# ---- command-line options (the render command and the benchmarks share them) ----------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--dtype, --attention, --channels-last, --vae-tiling, --compile."""
    g = parser.add_argument_group("speed-ups (docs/render.md, Speed)")
    g.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                   help="model precision: auto = fp16 on CUDA (bf16 for Flux/SD3 where native), fp32 elsewhere; "
                        "bf16 needs a GPU of compute capability 8 or newer (or the CPU)")
    g.add_argument("--attention", choices=ATTENTION, default="sdpa",
                   help="sdpa (torch's fused attention, the default) or math (the explicit softmax)")
    g.add_argument("--channels-last", choices=SWITCH, default="auto",
                   help="UNet and VAE in channels-last memory order; auto = on CUDA only")
    g.add_argument("--vae-tiling", choices=SWITCH, default="auto",
                   help=f"VAE in tiles (less memory, faint seams); auto = above {TILING_AUTO_PIXELS:,} pixels")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet (a warm-up before the first frame, timed as the stage compile)")
    g.add_argument("--offload", choices=OFFLOAD, default="auto",
                   help="group: keep the UNet/transformer (and T5) in CPU memory, moved to the GPU a block at a "
                        "time (Flux on a 24 GB card); auto = where the weights would not fit in the free GPU memory")


def from_args(args: argparse.Namespace) -> Speedups:
    """The Speedups of parsed options (the defaults where an option is absent)."""
    defaults = Speedups()
    return Speedups(**{f.name: getattr(args, f.name, getattr(defaults, f.name)) for f in fields(Speedups)})


def switches_from_args(args: argparse.Namespace) -> dict:
    """The options as a plain dict (dtype included), for the benchmarks' JSON."""
    return {"dtype": getattr(args, "dtype", "auto"), **from_args(args).__dict__}


__all__ = ["ATTENTION", "Applied", "DTYPE_CHOICES", "OFFLOAD", "SWITCH", "Speedups", "add_arguments", "apply",
           "attention_processors", "describe", "from_args", "offload_in_groups", "record", "recorded",
           "resolve_offload", "switches_from_args", "weight_bytes"]
