"""Rectified-flow (flow-matching) sampling for Stable Diffusion 3 / 3.5 and Flux: the counterpart of
samplers.py's `denoise` for models that predict a velocity instead of noise.

A flow model sees `x_t = (1 - sigma) * x_0 + sigma * noise` and predicts the velocity `noise - x_0`;
FlowMatchEulerDiscreteScheduler steps `x <- x + (sigma_next - sigma) * v`. img2img noises the frame to
the first kept sigma with `scheduler.scale_noise` (flow models have no `add_noise`). The schedule, the
noising and the random draws follow diffusers' StableDiffusion3Img2ImgPipeline and FluxImg2ImgPipeline
(and their txt2img pipelines) exactly, so the latents are theirs for the same seed.

The loop always holds latents in the image layout (B, C, H, W), float32. Flux's transformer reads 2x2
patches packed into a sequence; `flux_velocity` packs and unpacks around the model call. Both are
permutations, and the scheduler's step and `scale_noise` act element by element, so sampling in the
unpacked layout gives exactly the numbers of diffusers' packed loop, and the renderer's VAE, warps and
colour code see the same layout for every model family.

Flux ControlNets (runtime/controlnet.py) are called on the transformer's own packed inputs (`FluxInputs`) and
hand back what diffusers' FluxTransformer2DModel adds after its blocks (`FluxSamples`); `flow_denoise`'s
`velocity_at` gives each step its own velocity function, since a unit acts on a window of the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .noise import initial_noise


@dataclass(frozen=True)
class FlowCond:
    """What a flow transformer is conditioned on by one prompt: the token sequence (CLIP and T5
    embeddings joined, as the pipelines' `encode_prompt` returns them) and the pooled CLIP vector."""

    embeds: Tensor  # (B, tokens, joint_attention_dim)
    pooled: Tensor  # (B, pooled_projection_dim)


# (latents (B, C, H, W), t: a scheduler timestep on the 0..1000 scale, cond, guidance) -> velocity (B, C, H, W)
VelocityFn = Callable[[Tensor, Tensor, FlowCond, "float | None"], Tensor]
# step k of the frame (from 0, counted from the first step it runs) -> ((weight, cond) per prompt part, uncond):
# prompt editing changes the texts between steps, a composable prompt (AND) has several parts
StepConds = Callable[[int], "tuple[tuple[tuple[float, FlowCond], ...], FlowCond | None]"]
# step k of n (from 0, counted from the first step it runs) -> the velocity function of that step
VelocityAt = Callable[[int, int], VelocityFn]


@dataclass(frozen=True)
class FluxInputs:
    """What Flux's transformer is called with on one call, packed and in its dtype: a Flux ControlNet is
    called on the same (diffusers' FluxControlNetImg2ImgPipeline)."""

    hidden_states: Tensor  # (B, tokens, C * 4)
    timestep: Tensor  # (B,): sigma, the scheduler's timestep / 1000
    guidance: float | None  # the embedded guidance scale (Flux-dev), as the scene's row gives it
    pooled: Tensor  # (B, pooled_projection_dim)
    embeds: Tensor  # (B, text tokens, joint_attention_dim)
    txt_ids: Tensor  # (text tokens, 3)
    img_ids: Tensor  # (tokens, 3)


@dataclass(frozen=True)
class FluxSamples:
    """What ControlNets add to Flux's transformer: one tensor (B, tokens, inner) per double block and per
    single block, or fewer spread over them (diffusers' `interval_control`), None for none; `repeat` cycles
    the double blocks' instead (XLabs' ControlNets, `controlnet_blocks_repeat`)."""

    blocks: Sequence[Tensor] | None
    single: Sequence[Tensor] | None
    repeat: bool = False


# a step's ControlNet units: the transformer's inputs -> the samples to add (None: no unit acts)
FluxControlFn = Callable[[FluxInputs], "FluxSamples | None"]


# ---- the schedule ------------------------------------------------------------------------------------------


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                    base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """diffusers' `calculate_shift` (pipelines/flux/pipeline_flux.py): the dynamic shift `mu`, linear in
    the number of image tokens, from `base_shift` at `base_seq_len` to `max_shift` at `max_seq_len`."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def image_seq_len(latent_height: int, latent_width: int, patch_size: int) -> int:
    """How many image tokens the transformer sees: patches of `patch_size` (SD3: its config's
    patch_size, 2; Flux: 2, the 2x2 packing)."""
    return (int(latent_height) // patch_size) * (int(latent_width) // patch_size)


def flow_mu(scheduler_config, latent_height: int, latent_width: int, *, patch_size: int = 2,
            default_max_shift: float = 1.15) -> float | None:
    """The pipelines' `mu` for a frame of this latent size, None when the scheduler does not shift
    dynamically. The config's own shift bounds are used; where it lacks `max_shift`, SD3's pipelines
    take 1.16 and Flux's 1.15 (hence `default_max_shift`)."""
    if not scheduler_config.get("use_dynamic_shifting", False):
        return None
    return calculate_shift(
        image_seq_len(latent_height, latent_width, patch_size),
        scheduler_config.get("base_image_seq_len", 256),
        scheduler_config.get("max_image_seq_len", 4096),
        scheduler_config.get("base_shift", 0.5),
        scheduler_config.get("max_shift", default_max_shift),
    )


def flux_sigmas(steps: int) -> np.ndarray:
    """The sigmas Flux's pipelines pass to the scheduler (before its shift): 1 down to 1/steps, evenly.
    SD3's pipelines pass none and take the scheduler's own spacing."""
    return np.linspace(1.0, 1 / steps, steps)


def flow_timesteps(scheduler, steps: int, effective_steps: int, device: torch.device | str, *,
                   mu: float | None = None, sigmas: Sequence[float] | np.ndarray | None = None) -> Tensor:
    """The last `effective_steps` timesteps of a `steps`-step schedule, and the scheduler set to start there.

    diffusers' img2img pipelines (`retrieve_timesteps`, then `get_timesteps`) keep the last
    `steps - int(steps - steps * strength)` timesteps; for strength = effective_steps / steps that is
    `effective_steps`, which dfm reads from its FrameTable (Deforum's `int((1 - strength) * steps)`) rather
    than recomputing it from a float strength that can round one step the other way."""
    kwargs: dict = {}
    if mu is not None:
        kwargs["mu"] = float(mu)
    if sigmas is None:
        scheduler.set_timesteps(int(steps), device=device, **kwargs)
    else:  # the scheduler takes the step count from the sigmas (diffusers' `retrieve_timesteps`)
        scheduler.set_timesteps(sigmas=sigmas, device=device, **kwargs)
    n = max(0, min(int(effective_steps), int(steps)))
    start = (int(steps) - n) * scheduler.order
    scheduler.set_begin_index(start)  # scale_noise and the first step read their sigma from here
    return scheduler.timesteps[start:]


# ---- the loop ----------------------------------------------------------------------------------------------


def composed_velocity(velocity_fn: VelocityFn, latents: Tensor, t: Tensor,
                      parts: Sequence[tuple[float, FlowCond]], uncond: FlowCond | None, cfg_scale: float,
                      guidance: float | None = None) -> Tensor:
    """The velocity of one step for a prompt of one or more weighted parts (A1111's AND): with an unconditional
    pass `v_u + cfg * sum(w_i (v_i - v_u))` (A1111's composable guidance; one part of weight 1 is plain CFG,
    `v_u + cfg * (v_c - v_u)`), without one (Flux, or no CFG) the blend `sum(w_i v_i)`, the weights then summing
    to 1 (prompts.RowConditioning). The passes go in one batch where the embeddings' shapes agree, unconditional
    first, as SD3's pipeline batches them."""
    conds = ([uncond] if uncond is not None else []) + [c for _, c in parts]
    same = all(c.embeds.shape == conds[0].embeds.shape and c.pooled.shape == conds[0].pooled.shape for c in conds)
    if len(conds) == 1:
        vs = (velocity_fn(latents, t, conds[0], guidance),)
    elif same:
        both = FlowCond(torch.cat([c.embeds for c in conds]), torch.cat([c.pooled for c in conds]))
        vs = velocity_fn(torch.cat([latents] * len(conds)), t, both, guidance).chunk(len(conds))
    else:
        vs = tuple(velocity_fn(latents, t, c, guidance) for c in conds)
    if uncond is None:
        return sum(w * v for (w, _), v in zip(parts, vs, strict=True))
    v_u = vs[0]
    return v_u + cfg_scale * sum(w * (v - v_u) for (w, _), v in zip(parts, vs[1:], strict=True))


@torch.no_grad()
def flow_denoise(
    velocity_fn: VelocityFn,
    scheduler,
    *,
    cond: FlowCond | None,
    uncond: FlowCond | None,
    cfg_scale: float,
    steps: int,
    effective_steps: int,
    generator: torch.Generator,
    init_latents: Tensor | None = None,
    shape: tuple[int, ...] | None = None,
    mu: float | None = None,
    sigmas: Sequence[float] | np.ndarray | None = None,
    guidance: float | None = None,
    subseed: int = 0,
    subseed_strength: float = 0.0,
    resize_from: tuple[int, int] | None = None,
    step_conds: StepConds | None = None,
    velocity_at: VelocityAt | None = None,
) -> Tensor:
    """Sample one frame's latents (B, C, H, W) with a flow-matching scheduler.

    `step_conds(k)`, where given, is step k's conditioning instead of `cond` and `uncond` (prompt editing,
    composable prompts: `composed_velocity`); `velocity_at(k, n)`, where given, is step k's velocity function
    of the n run (ControlNet units on a window of the steps) instead of `velocity_fn`.

    txt2img (`init_latents` None): noise of `shape` is the sample at sigma 1, then all `steps` steps.
    img2img: `init_latents` (VAE latents, shifted and scaled) moved to the first kept sigma by
    `scale_noise`, then `effective_steps` steps; 0 steps returns the init unchanged (Deforum keeps the frame).

    The unconditional pass runs only when `uncond` is given and `cfg_scale` > 1, as in diffusers (SD3's
    CFG, Flux's "true CFG"); Flux-dev's distilled `guidance` is a number the transformer embeds, sent to
    `velocity_fn` with every call. `mu` (dynamic shift) and `sigmas` (Flux's spacing) shape the schedule
    as in `flow_timesteps`. Every random draw is the frame generator's: the starting noise, drawn in
    the pipelines' order and shape (`noise.initial_noise`, so subseeds and "resize seed from" work as in
    `samplers.denoise`), and the noise of a stochastic scheduler's steps.
    """
    device = generator.device
    if step_conds is None:
        fixed = ((1.0, cond),), uncond

        def step_conds(k: int):
            return fixed
    if init_latents is None:
        if shape is None:
            raise ValueError("flow_denoise needs `init_latents` or `shape`")
        timesteps = flow_timesteps(scheduler, steps, steps, device, mu=mu, sigmas=sigmas)
        latents = initial_noise(shape, generator, subseed=subseed, subseed_strength=subseed_strength,
                                resize_from=resize_from)
    else:
        if int(effective_steps) < 1:
            return init_latents
        timesteps = flow_timesteps(scheduler, steps, effective_steps, device, mu=mu, sigmas=sigmas)
        init = init_latents.float()
        noise = initial_noise(init.shape, generator, subseed=subseed, subseed_strength=subseed_strength,
                              resize_from=resize_from)
        latents = scheduler.scale_noise(init, timesteps[:1].repeat(init.shape[0]), noise)
    for k, t in enumerate(timesteps):
        parts, negative = step_conds(k)
        negative = negative if negative is not None and cfg_scale > 1 else None
        fn = velocity_fn if velocity_at is None else velocity_at(k, len(timesteps))
        v = composed_velocity(fn, latents, t, parts, negative, cfg_scale, guidance)
        latents = scheduler.step(v.float(), t, latents, generator=generator).prev_sample
    return latents


def sum_samples(parts: Sequence[FluxSamples], blocks: int, single: int) -> FluxSamples:
    """The units' samples summed (FluxMultiControlNetModel): tensor by tensor when they share a layout (the
    same counts and block repeat), else each spread over the transformer's `blocks` and `single` blocks
    first, as the transformer would spread it, then summed block by block."""
    def layout(p: FluxSamples):
        return len(p.blocks or ()), len(p.single or ()), p.repeat

    if len(parts) == 1:
        return parts[0]
    if all(layout(p) == layout(parts[0]) for p in parts):
        return FluxSamples(_sum_lists([p.blocks for p in parts]), _sum_lists([p.single for p in parts]),
                           parts[0].repeat)
    spread = [FluxSamples(_spread(p.blocks, blocks, p.repeat), _spread(p.single, single, False)) for p in parts]
    return FluxSamples(_sum_lists([p.blocks for p in spread]), _sum_lists([p.single for p in spread]))


def _spread(samples: Sequence[Tensor] | None, count: int, repeat: bool) -> list[Tensor] | None:
    """Which sample each of `count` transformer blocks adds (diffusers' FluxTransformer2DModel: cycled when
    `repeat`, else in runs of ceil(count / len)); None without samples (nothing to add anywhere)."""
    if not samples:
        return None
    if repeat:
        return [samples[i % len(samples)] for i in range(count)]
    run = -(-count // len(samples))
    return [samples[i // run] for i in range(count)]


def _sum_lists(lists) -> list[Tensor] | None:
    """Element-wise sums of equally long lists of tensors, a None entry (or list) counting as nothing."""
    lists = [x for x in lists if x]
    if not lists:
        return None
    out = []
    for items in zip(*lists, strict=True):
        present = [t for t in items if t is not None]
        total = present[0]
        for t in present[1:]:
            total = total + t
        out.append(total)
    return out


# ---- the models --------------------------------------------------------------------------------------------


def sd3_velocity(transformer) -> VelocityFn:
    """SD3/SD3.5's MMDiT as a velocity function: the timestep on the 0..1000 scale, one per batch item.
    SD3 has no guidance embedding, so `guidance` is ignored, nor ControlNets here (`control` must be None)."""

    def velocity(latents: Tensor, t: Tensor, cond: FlowCond, guidance: float | None = None,
                 control: FluxControlFn | None = None) -> Tensor:
        if control is not None:
            raise ValueError("SD3 runs no ControlNet in dfm (diffusers has no SD3 ControlNet img2img pipeline)")
        dtype = transformer.dtype
        out = transformer(
            hidden_states=latents.to(dtype),
            timestep=t.expand(latents.shape[0]),
            encoder_hidden_states=cond.embeds.to(dtype),
            pooled_projections=cond.pooled.to(dtype),
            return_dict=False,
        )[0]
        return out.float()

    return velocity


def pack_latents(latents: Tensor) -> Tensor:
    """Flux's packing: (B, C, H, W) -> (B, H/2 * W/2, C * 4), each 2x2 patch one token (H and W even)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: Tensor, height: int, width: int) -> Tensor:
    """The inverse of `pack_latents`: (B, H/2 * W/2, C * 4) -> (B, C, H, W) for latent `height`, `width`."""
    b, _, d = packed.shape
    x = packed.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def token_mask(mask: Tensor | None, height: int, width: int, latent_scale: int) -> Tensor | None:
    """A unit's mask (1, 1, H, W) averaged over each image token (a 2x2 patch of latents) of a `height` x
    `width` frame, in the tokens' order: (1, tokens, 1)."""
    if mask is None:
        return None
    size = (height // latent_scale // 2, width // latent_scale // 2)
    m = torch.nn.functional.interpolate(mask.float(), size=size, mode="area")
    return m.reshape(1, -1, 1)


def flux_image_ids(height: int, width: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
    """The positions Flux's rotary embedding gives the image tokens: (row, column) of each 2x2 patch,
    for latent `height`, `width` (diffusers' `_prepare_latent_image_ids`)."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(height // 2)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def flux_velocity(transformer) -> VelocityFn:
    """Flux's transformer as a velocity function over unpacked latents: pack, the timestep divided by
    1000 (Flux embeds sigma), text tokens at position 0, guidance embedded where the model has it
    (Flux-dev; Flux-schnell has none and ignores it), unpack. `control`, where given, is the step's
    ControlNet units, called on the same inputs; their samples are added inside the transformer. `context`
    (Flux.1 Kontext), unpacked latents of the context image: their tokens follow the frame's, at position 1
    of the first rotary axis (diffusers' FluxKontextPipeline), and only the frame's come back."""
    takes_guidance = bool(transformer.config.guidance_embeds)
    # what stays the same over a frame's steps (the rotary positions, the packed context image), built at its
    # first step: (key, context, (image ids, packed context or None, text ids))
    last: list = [None, None, None]

    def positions(latents: Tensor, context: Tensor | None, text_tokens: int, dtype: torch.dtype):
        key = (tuple(latents.shape[-2:]), latents.device, dtype, text_tokens)
        if last[0] != key or last[1] is not context:
            ids = flux_image_ids(latents.shape[-2], latents.shape[-1], latents.device, dtype)
            packed = None
            if context is not None:
                ctx_ids = flux_image_ids(context.shape[-2], context.shape[-1], latents.device, dtype)
                ctx_ids[..., 0] = 1
                packed, ids = pack_latents(context).to(dtype), torch.cat([ids, ctx_ids], dim=0)
            txt_ids = torch.zeros(text_tokens, 3, device=latents.device, dtype=dtype)
            last[:] = [key, context, (ids, packed, txt_ids)]  # (the context is kept: `is` compares it)
        return last[2]

    def velocity(latents: Tensor, t: Tensor, cond: FlowCond, guidance: float | None = None,
                 control: FluxControlFn | None = None, context: Tensor | None = None) -> Tensor:
        dtype = transformer.dtype
        b, _, h, w = latents.shape
        g = None
        if takes_guidance:
            if guidance is None:
                raise ValueError("this Flux model embeds a guidance scale: pass `guidance`")
            g = torch.full([1], float(guidance), device=latents.device, dtype=torch.float32).expand(b)
        ids, packed, txt_ids = positions(latents, context, cond.embeds.shape[1], dtype)
        hidden = pack_latents(latents).to(dtype)
        tokens = hidden.shape[1]
        if packed is not None:
            hidden = torch.cat([hidden, packed.expand(b, -1, -1)], dim=1)
        inputs = FluxInputs(
            hidden_states=hidden,
            timestep=t.expand(b).to(latents.dtype) / 1000,
            guidance=guidance,
            pooled=cond.pooled.to(dtype),
            embeds=cond.embeds.to(dtype),
            txt_ids=txt_ids,
            img_ids=ids,
        )
        samples = (control(inputs) if control is not None else None) or FluxSamples(None, None)
        out = transformer(
            hidden_states=inputs.hidden_states,
            timestep=inputs.timestep,
            guidance=g,
            pooled_projections=inputs.pooled,
            encoder_hidden_states=inputs.embeds,
            txt_ids=inputs.txt_ids,
            img_ids=inputs.img_ids,
            controlnet_block_samples=samples.blocks,
            controlnet_single_block_samples=samples.single,
            controlnet_blocks_repeat=samples.repeat,
            return_dict=False,
        )[0]
        return unpack_latents(out[:, :tokens].float(), h, w)

    return velocity


__all__ = [
    "FlowCond",
    "FluxControlFn",
    "FluxInputs",
    "FluxSamples",
    "VelocityAt",
    "VelocityFn",
    "calculate_shift",
    "flow_denoise",
    "flow_mu",
    "flow_timesteps",
    "flux_image_ids",
    "flux_sigmas",
    "flux_velocity",
    "image_seq_len",
    "pack_latents",
    "sd3_velocity",
    "sum_samples",
    "token_mask",
    "unpack_latents",
]
