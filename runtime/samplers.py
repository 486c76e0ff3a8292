"""Sampler names -> diffusers schedulers, and dfm's own denoising loop for one frame.

diffusers' pipelines are not used: dfm runs exactly the FrameTable's `effective_steps`, keeps the frame
when that is 0 (diffusers' img2img would return an empty batch), and takes every random draw from the
frame's own generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
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


_KARRAS = {"use_karras_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}
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
    # few-step samplers
    "lcm": SamplerSpec(LCMScheduler, takes_generator=True),  # LCM-distilled UNets and LCM-LoRAs, 2..8 steps
    "euler_trailing": SamplerSpec(EulerDiscreteScheduler, _TRAILING, takes_generator=True),
    "euler_a_trailing": SamplerSpec(EulerAncestralDiscreteScheduler, _TRAILING, takes_generator=True),
    "dpmpp_2m_trailing": SamplerSpec(DPMSolverMultistepScheduler, _TRAILING, takes_generator=True),
    "dpmpp_2m_sde_trailing": SamplerSpec(DPMSolverMultistepScheduler, {**_SDE, **_TRAILING}, takes_generator=True),
}

# eps_fn(latents, t, embeddings) -> predicted noise; the sampler never learns which model it drives
EpsFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def make_scheduler(name: str, base_config: Mapping):
    """A fresh scheduler (schedulers keep per-denoise state) built from the model's own config."""
    spec = SAMPLERS[name]
    return spec.cls.from_config(base_config, **{"timestep_spacing": "linspace", **spec.kwargs})


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


def cfg_eps(
    eps_fn: EpsFn, latents: Tensor, t: Tensor, cond: Tensor, uncond: Tensor | None, cfg_scale: float
) -> Tensor:
    """Classifier-free guidance in one batched call; `uncond` None (the loop passes None for a scale of 1 or
    less, as diffusers does) is exactly the conditional prediction. Prompts
    of different lengths (long prompts are several 77-token chunks) take two calls, as in A1111."""
    if uncond is None:
        return eps_fn(latents, t, cond)
    if uncond.shape != cond.shape:
        eps_u, eps_c = eps_fn(latents, t, uncond), eps_fn(latents, t, cond)
    else:
        eps_u, eps_c = eps_fn(torch.cat([latents, latents]), t, torch.cat([uncond, cond])).chunk(2)
    return eps_u + cfg_scale * (eps_c - eps_u)


@torch.no_grad()
def denoise(
    eps_fn: EpsFn,
    scheduler,
    *,
    cond: Tensor,
    uncond: Tensor | None,
    cfg_scale: float,
    steps: int,
    effective_steps: int,
    generator: torch.Generator,
    takes_generator: bool,
    init_latents: Tensor | None = None,
    shape: tuple[int, ...] | None = None,
    subseed: int = 0,
    subseed_strength: float = 0.0,
) -> Tensor:
    """Sample one frame's latents.

    txt2img (`init_latents` None): noise of `shape` through the full `steps`-step schedule.
    img2img: `init_latents` noised to the first kept timestep, then `effective_steps` steps; 0 steps
    returns the init unchanged (Deforum keeps the frame). The starting noise is the generator's, moved
    towards the subseed's by `subseed_strength` (`noise.initial_noise`).
    """
    device = generator.device
    if init_latents is None:
        assert shape is not None
        scheduler.set_timesteps(int(steps), device=device)
        timesteps = scheduler.timesteps
        latents = initial_noise(shape, generator, subseed=subseed, subseed_strength=subseed_strength)
        latents = latents * scheduler.init_noise_sigma
    else:
        timesteps = img2img_timesteps(scheduler, int(steps), int(effective_steps), device)
        if int(effective_steps) < 1 or len(timesteps) == 0:
            return init_latents
        init = init_latents.float()
        noise = initial_noise(init.shape, generator, subseed=subseed, subseed_strength=subseed_strength)
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(init.shape[0]))
    step_kw = {"generator": generator} if takes_generator else {}
    for t in timesteps:
        x = scheduler.scale_model_input(latents, t)
        eps = cfg_eps(eps_fn, x, t, cond, uncond, cfg_scale)
        latents = scheduler.step(eps.float(), t, latents, **step_kw).prev_sample
    return latents
