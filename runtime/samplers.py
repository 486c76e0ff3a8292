"""Sampler names -> diffusers schedulers, and dfm's own denoising loop for one frame.

diffusers' pipelines are not used: dfm runs exactly the FrameTable's `effective_steps`, keeps the frame
when that is 0 (diffusers' img2img would return an empty batch), and takes every random draw from the
frame's own generator.

The conditioning may change from one sampler step to the next (A1111's prompt editing and alternation)
and may have several weighted parts (A1111's composable `AND`): `denoise` asks a `Conditioning` for each
step's `StepCond` and `cfg_eps` sends every part and the unconditional embedding of one shape to the UNet
in one batched call.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from torch import Tensor

from .noise import initial_noise


@dataclass(frozen=True)
class SamplerSpec:
    cls: type
    kwargs: Mapping[str, object] = field(default_factory=dict)
    # whether `step()` takes the frame's generator (for its noise draws, if any): stated here, never
    # guessed from the signature at run time (a test checks this column against diffusers)
    takes_generator: bool = False
    # a rectified-flow sampler (SD3, Flux: runtime/flow_matching.py), built from the model's config as it is
    flow: bool = False


_KARRAS = {"use_karras_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}
# A1111's "Exponential" schedule type (k-diffusion get_sigmas_exponential: log-sigma evenly spaced)
_EXPONENTIAL = {"use_exponential_sigmas": True}
# few-step (turbo, Lightning, Hyper-SD) models are distilled on timesteps that end at 999: "trailing"
# spacing starts every schedule there, which "linspace" does too but at 1..4 steps spaces the rest unlike
# what those models saw (diffusers' SDXL-Turbo and Lightning recipes use trailing)
_TRAILING = {"timestep_spacing": "trailing"}

# Canonical names of compiler/catalogue.py SAMPLERS. Every entry gets timestep_spacing="linspace"
# (see make_scheduler) so the sigmas span the whole 999..0 range as k-diffusion's do (Deforum, A1111),
# unless it names its own spacing (the *_trailing few-step samplers).
SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(EulerDiscreteScheduler, takes_generator=True),  # s_churn=0: draws but ignores noise
    "euler_a": SamplerSpec(EulerAncestralDiscreteScheduler, takes_generator=True),
    "klms": SamplerSpec(LMSDiscreteScheduler),
    "klms_karras": SamplerSpec(LMSDiscreteScheduler, _KARRAS),
    "heun": SamplerSpec(HeunDiscreteScheduler),
    "dpm2": SamplerSpec(KDPM2DiscreteScheduler),
    "dpm2_karras": SamplerSpec(KDPM2DiscreteScheduler, _KARRAS),
    "dpm2_a": SamplerSpec(KDPM2AncestralDiscreteScheduler, takes_generator=True),
    "dpm2_a_karras": SamplerSpec(KDPM2AncestralDiscreteScheduler, _KARRAS, takes_generator=True),
    "dpmpp_2m": SamplerSpec(DPMSolverMultistepScheduler, takes_generator=True),
    "dpmpp_2m_karras": SamplerSpec(DPMSolverMultistepScheduler, _KARRAS, takes_generator=True),
    "dpmpp_2m_sde": SamplerSpec(DPMSolverMultistepScheduler, _SDE, takes_generator=True),
    "dpmpp_2m_sde_karras": SamplerSpec(DPMSolverMultistepScheduler, {**_SDE, **_KARRAS}, takes_generator=True),
    "ddim": SamplerSpec(DDIMScheduler, takes_generator=True),  # eta=0 by default, noise only with eta>0
    "plms": SamplerSpec(PNDMScheduler, {"skip_prk_steps": True}),  # one warm-up UNet call per denoise
    "unipc": SamplerSpec(UniPCMultistepScheduler),
    # A1111 1.9+ combines any sampler with a schedule type ("Euler" + "Karras"): the pairs diffusers has exactly
    "euler_karras": SamplerSpec(EulerDiscreteScheduler, _KARRAS, takes_generator=True),
    "euler_exponential": SamplerSpec(EulerDiscreteScheduler, _EXPONENTIAL, takes_generator=True),
    "heun_karras": SamplerSpec(HeunDiscreteScheduler, _KARRAS),
    "dpmpp_2m_exponential": SamplerSpec(DPMSolverMultistepScheduler, _EXPONENTIAL, takes_generator=True),
    "dpmpp_2m_sde_exponential": SamplerSpec(DPMSolverMultistepScheduler, {**_SDE, **_EXPONENTIAL},
                                            takes_generator=True),
    # few-step samplers
    "lcm": SamplerSpec(LCMScheduler, takes_generator=True),  # LCM-distilled UNets and LCM-LoRAs, 2..8 steps
    "euler_trailing": SamplerSpec(EulerDiscreteScheduler, _TRAILING, takes_generator=True),
    "euler_a_trailing": SamplerSpec(EulerAncestralDiscreteScheduler, _TRAILING, takes_generator=True),
    "dpmpp_2m_trailing": SamplerSpec(DPMSolverMultistepScheduler, _TRAILING, takes_generator=True),
    "dpmpp_2m_sde_trailing": SamplerSpec(DPMSolverMultistepScheduler, {**_SDE, **_TRAILING}, takes_generator=True),
    # rectified flow (SD3/SD3.5, Flux): the Euler step of their own pipelines, with the model's shift
    "flow_euler": SamplerSpec(FlowMatchEulerDiscreteScheduler, takes_generator=True, flow=True),
}
FLOW_SAMPLERS = frozenset(name for name, spec in SAMPLERS.items() if spec.flow)

# eps_fn(latents, t, embeddings) -> predicted noise; the sampler never learns which model it drives. With
# ControlNet it is also called as eps_fn(latents, t, embeddings, residuals) (`StableDiffusion.eps`)
EpsFn = Callable[..., Tensor]


@dataclass(frozen=True)
class Residuals:
    """What ControlNets add to one UNet call: one tensor per down-block output (shallow to deep), one for the
    mid block (diffusers' down_block_additional_residuals / mid_block_additional_residual)."""

    down: tuple[Tensor, ...]
    mid: Tensor

    def __add__(self, other: Residuals) -> Residuals:
        """Two units' residuals summed, as diffusers' MultiControlNetModel sums them."""
        down = tuple(a + b for a, b in zip(self.down, other.down, strict=True))
        return Residuals(down, self.mid + other.mid)


class Control(Protocol):
    """What a denoise with ControlNet asks at each UNet call (runtime/controlnet.py `FrameControl`). `index`
    counts the loop's steps from 0 and `n` is how many it runs (diffusers' guidance window is read from
    these); `uncond` is a bool per batch item, true for the unconditional (negative) ones."""

    def on(self, index: int, n: int) -> bool:
        """Whether any unit gives residuals at this step (none: the UNet call is the plain one)."""

    def residuals(self, index: int, n: int, latents: Tensor, t: Tensor, embeddings: Tensor,
                  uncond: Tensor) -> Residuals | None:
        """The summed residuals for one UNet call on exactly these inputs, None when no unit gives any."""


# (latents, t, embeddings, uncond) -> the residuals of one UNet call: a Control bound to one step
StepControl = Callable[[Tensor, Tensor, Tensor, Tensor], Residuals | None]


@dataclass(frozen=True)
class StepCond:
    """What the UNet is conditioned on at one sampler step: the conditional parts as (weight, embedding),
    and the unconditional (negative) embedding, None when the step needs no unconditional pass."""

    parts: tuple[tuple[float, Tensor], ...]
    uncond: Tensor | None

    @property
    def plain(self) -> bool:
        """One part of weight 1: the guidance arithmetic of a plain prompt (kept exactly as it always was)."""
        return len(self.parts) == 1 and self.parts[0][0] == 1.0


# step -> that step's conditioning; step counts the UNet evaluations of one denoise from 0
Conditioning = Callable[[int], StepCond]


def fixed_conditioning(cond: Tensor, uncond: Tensor | None) -> Conditioning:
    """The same plain conditioning at every step (one prompt, no editing)."""
    step = StepCond(((1.0, cond),), uncond)
    return lambda _s: step


class CountedEps:
    """An eps function that counts the batch items it sends on (`evals`): the UNet work of composable
    prompts is one item per part and one for the unconditional pass, however the calls are batched."""

    def __init__(self, eps_fn: EpsFn) -> None:
        self.eps_fn = eps_fn
        self.evals = 0

    def __call__(self, latents: Tensor, t: Tensor, embeddings: Tensor, residuals: Residuals | None = None) -> Tensor:
        self.evals += int(latents.shape[0])
        if residuals is None:
            return self.eps_fn(latents, t, embeddings)
        return self.eps_fn(latents, t, embeddings, residuals)


def make_scheduler(name: str, base_config: Mapping):
    """A fresh scheduler (schedulers keep per-denoise state) built from the model's own config."""
    spec = SAMPLERS[name]
    if spec.flow:  # the model's own schedule (shift, dynamic shifting) exactly, as its pipelines build it
        return spec.cls.from_config(base_config, **spec.kwargs)
    return spec.cls.from_config(base_config, **{"timestep_spacing": "linspace", **spec.kwargs})


def scheduler_maker(name: str, base_config: Mapping) -> Callable[[], object]:
    """A maker of fresh schedulers for one render: the first built from the config, each one after a copy of
    it as it was built (diffusers takes up to half a second to build a Karras scheduler; a copy of a fresh
    one is that same fresh state, so the frames are the same bytes)."""
    built = make_scheduler(name, base_config)
    return lambda: copy.deepcopy(built)


def frame_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of one diffusion: every random draw of a frame comes from its row's seed."""
    return torch.Generator(device=device).manual_seed(int(seed))


def img2img_timesteps(scheduler, steps: int, effective_steps: int, device: torch.device) -> Tensor:
    """The last `effective_steps` steps of a `steps`-step schedule (Deforum: the last t_enc+1 sigmas)."""
    scheduler.set_timesteps(steps, device=device)
    n = max(0, min(int(effective_steps), int(steps)))
    start = (steps - n) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):  # k-diffusion style schedulers index sigmas from here
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


def cfg_eps(eps_fn: EpsFn, latents: Tensor, t: Tensor, step: StepCond, cfg_scale: float,
            control: StepControl | None = None) -> Tensor:
    """The guided prediction of one step. The unconditional embedding and the parts go to the UNet in one
    batched call per embedding shape (unconditional first): embeddings of different lengths (long prompts
    are several 77-token chunks) take a call each, as in A1111.

    A plain step (one part of weight 1) is `eps_u + cfg * (eps_c - eps_u)`, or the conditional prediction
    alone without an unconditional pass (the loop passes none for a scale of 1 or less, as diffusers does).
    Several parts are A1111's composable guidance `eps_u + cfg * sum_i(w_i * (eps_i - eps_u))`; without an
    unconditional pass (a crossfade between two plain prompts' predictions) they are `sum_i(w_i * eps_i)`.

    `control` gives each UNet call its ControlNet residuals, told which batch items are unconditional."""
    embeddings = [e for _, e in step.parts] if step.uncond is None else [step.uncond, *(e for _, e in step.parts)]
    uncond = [False] * len(step.parts) if step.uncond is None else [True] + [False] * len(step.parts)
    preds = _batched(eps_fn, latents, t, embeddings, control, uncond)
    weights = [w for w, _ in step.parts]
    if step.uncond is None:
        if step.plain:
            return preds[0]
        out = weights[0] * preds[0]
        for w, eps in zip(weights[1:], preds[1:], strict=True):
            out = out + w * eps
        return out
    eps_u = preds[0]
    if step.plain:
        return eps_u + cfg_scale * (preds[1] - eps_u)
    total = weights[0] * (preds[1] - eps_u)
    for w, eps in zip(weights[1:], preds[2:], strict=True):
        total = total + w * (eps - eps_u)
    return eps_u + cfg_scale * total


def _batched(eps_fn: EpsFn, latents: Tensor, t: Tensor, embeddings: list[Tensor],
             control: StepControl | None = None, uncond: Sequence[bool] = ()) -> list[Tensor]:
    """The prediction for each embedding, in order: one UNet call per distinct embedding shape, in the
    order the shapes first appear (a single embedding is sent as it is, without a concatenation).
    `uncond[k]` says embedding k is the unconditional one (what `control` is told per batch item)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, e in enumerate(embeddings):
        groups.setdefault(tuple(e.shape), []).append(k)
    out: list[Tensor | None] = [None] * len(embeddings)
    for members in groups.values():
        flags = [bool(uncond[k]) if uncond else False for k in members]
        if len(members) == 1:
            out[members[0]] = _controlled(eps_fn, latents, t, embeddings[members[0]], control, flags)
            continue
        n = len(members)
        x, e = torch.cat([latents] * n), torch.cat([embeddings[k] for k in members])
        preds = _controlled(eps_fn, x, t, e, control, flags).chunk(n)
        for k, eps in zip(members, preds, strict=True):
            out[k] = eps
    return out  # type: ignore[return-value]  # every index is filled above


def _controlled(eps_fn: EpsFn, x: Tensor, t: Tensor, e: Tensor, control: StepControl | None,
                flags: list[bool]) -> Tensor:
    """One UNet call, with the residuals `control` gives for it (none: the plain call, as without ControlNet).
    `flags` holds one unconditional flag per embedding in the batch; each covers its share of `x`'s items."""
    if control is None:
        return eps_fn(x, t, e)
    uncond = torch.tensor(flags, device=x.device).repeat_interleave(x.shape[0] // len(flags))
    residuals = control(x, t, e, uncond)
    return eps_fn(x, t, e) if residuals is None else eps_fn(x, t, e, residuals)


@torch.no_grad()
def denoise(
    eps_fn: EpsFn,
    scheduler,
    *,
    conditioning: Conditioning | None = None,
    cond: Tensor | None = None,
    uncond: Tensor | None = None,
    cfg_scale: float,
    steps: int,
    effective_steps: int,
    generator: torch.Generator,
    takes_generator: bool,
    init_latents: Tensor | None = None,
    shape: tuple[int, ...] | None = None,
    subseed: int = 0,
    subseed_strength: float = 0.0,
    resize_from: tuple[int, int] | None = None,
    control: Control | None = None,
) -> Tensor:
    """Sample one frame's latents.

    txt2img (`init_latents` None): noise of `shape` through the full `steps`-step schedule.
    img2img: `init_latents` noised to the first kept timestep, then `effective_steps` steps; 0 steps
    returns the init unchanged (Deforum keeps the frame). The starting noise is the generator's, moved
    towards the subseed's by `subseed_strength` (`noise.initial_noise`), drawn at `resize_from` (latent
    height, width) and placed in the frame's shape as A1111's "resize seed from" does.

    `conditioning(s)` gives step s's conditioning (s counts the UNet evaluations from 0, in img2img too);
    `cond`/`uncond` instead are one plain conditioning for every step.

    `control` adds ControlNet residuals to the UNet calls of the steps where it is `on`; the other steps
    (and a denoise without it) make exactly the calls they make without ControlNet.
    """
    if conditioning is None:
        if cond is None:
            raise ValueError("denoise needs `conditioning` or `cond`")
        conditioning = fixed_conditioning(cond, uncond)
    device = generator.device
    if init_latents is None:
        assert shape is not None
        scheduler.set_timesteps(int(steps), device=device)
        timesteps = scheduler.timesteps
        latents = initial_noise(shape, generator, subseed=subseed, subseed_strength=subseed_strength,
                                resize_from=resize_from)
        latents = latents * scheduler.init_noise_sigma
    else:
        timesteps = img2img_timesteps(scheduler, int(steps), int(effective_steps), device)
        if int(effective_steps) < 1 or len(timesteps) == 0:
            return init_latents
        init = init_latents.float()
        noise = initial_noise(init.shape, generator, subseed=subseed, subseed_strength=subseed_strength,
                              resize_from=resize_from)
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(init.shape[0]))
    step_kw = {"generator": generator} if takes_generator else {}
    n = len(timesteps)
    for s, t in enumerate(timesteps):
        x = scheduler.scale_model_input(latents, t)
        step_control = partial(control.residuals, s, n) if control is not None and control.on(s, n) else None
        eps = cfg_eps(eps_fn, x, t, conditioning(s), cfg_scale, step_control)
        latents = scheduler.step(eps.float(), t, latents, **step_kw).prev_sample
    return latents
