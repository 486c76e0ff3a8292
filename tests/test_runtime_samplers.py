"""Samplers: every catalogue name maps to a scheduler, runs txt2img and img2img, calls the UNet the
expected number of times, keeps the frame at 0 steps, and matches diffusers' own pipelines."""

import inspect

import pytest
import torch

from dfm.compiler.catalogue import SAMPLERS as CATALOGUE_SAMPLERS
from dfm.runtime import samplers

SECOND_ORDER = {"heun", "heun_karras", "dpm2", "dpm2_karras", "dpm2_a", "dpm2_a_karras"}


def test_every_catalogue_sampler_maps_and_nothing_else():
    assert set(samplers.SAMPLERS) == set(CATALOGUE_SAMPLERS)


def test_stochastic_flag_matches_the_schedulers_step_signature():
    for name, spec in samplers.SAMPLERS.items():
        takes = "generator" in inspect.signature(spec.cls.step).parameters
        assert spec.takes_generator == takes, name


@pytest.fixture(scope="module")
def unet_and_embeddings(tiny_models):
    pipe = tiny_models["pipe"]
    with torch.no_grad():
        ids = pipe.tokenizer(["a cat", ""], padding="max_length", max_length=77, return_tensors="pt").input_ids
        emb = pipe.text_encoder(ids)[0]
    calls = []

    def eps(x, t, e):
        calls.append(x.shape[0])
        return pipe.unet(x, t, encoder_hidden_states=e).sample

    return pipe, eps, emb[:1], emb[1:], calls


def expected_calls(name, steps):
    if name in SECOND_ORDER:
        return 2 * steps - 1
    if name == "plms":
        return steps + 1  # PNDM's warm-up step
    return steps


@pytest.mark.parametrize("name", sorted(n for n, s in samplers.SAMPLERS.items() if not s.flow))  # SD's loop
def test_sampler_runs_txt2img_and_img2img(name, unet_and_embeddings):
    pipe, eps, cond, uncond, calls = unet_and_embeddings
    config = pipe.scheduler.config

    def run(init=None, effective=4, seed=1):
        calls.clear()
        out = samplers.denoise(
            eps,
            samplers.make_scheduler(name, config),
            cond=cond,
            uncond=uncond,
            cfg_scale=5.0,
            steps=4,
            effective_steps=effective,
            generator=torch.Generator().manual_seed(seed),
            takes_generator=samplers.SAMPLERS[name].takes_generator,
            init_latents=init,
            shape=(1, 4, 8, 8),
        )
        return out, len(calls), set(calls)

    t2i, n_t2i, batch = run()
    assert t2i.shape == (1, 4, 8, 8) and torch.isfinite(t2i).all()
    assert n_t2i == expected_calls(name, 4) and batch == {2}  # CFG: one batched call per step
    again, _, _ = run()
    assert torch.equal(t2i, again)  # same seed, same latents
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    i2i, n_i2i, _ = run(init, effective=2)
    assert torch.isfinite(i2i).all() and not torch.equal(i2i, init)
    assert n_i2i == expected_calls(name, 2)
    kept, n_kept, _ = run(init, effective=0)  # strength 1.0: no step, the frame is kept
    assert kept is init and n_kept == 0


def test_cfg_scale_one_skips_the_unconditional_batch(unet_and_embeddings):
    pipe, eps, cond, _, calls = unet_and_embeddings
    calls.clear()
    samplers.denoise(
        eps,
        samplers.make_scheduler("euler", pipe.scheduler.config),
        cond=cond,
        uncond=None,
        cfg_scale=1.0,
        steps=3,
        effective_steps=3,
        generator=torch.Generator().manual_seed(0),
        takes_generator=True,
        shape=(1, 4, 8, 8),
    )
    assert calls == [1, 1, 1]


def test_img2img_keeps_the_last_effective_steps_of_the_schedule(unet_and_embeddings):
    pipe = unet_and_embeddings[0]
    sched = samplers.make_scheduler("euler", pipe.scheduler.config)
    full = samplers.img2img_timesteps(sched, 10, 10, torch.device("cpu")).clone()
    tail = samplers.img2img_timesteps(sched, 10, 3, torch.device("cpu"))
    assert torch.equal(tail, full[-3:])
    assert float(full[0]) == pytest.approx(999.0)  # linspace spacing: the full 999..0 range, as k-diffusion


@pytest.mark.parametrize("name", ["euler_a", "dpmpp_2m_sde", "ddim"])
def test_same_latents_as_diffusers_pipelines(name, tiny_models):
    """dfm's loop gives what diffusers' txt2img and img2img pipelines give for the same inputs."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    pipe = tiny_models["pipe"]
    with torch.no_grad():
        ids = pipe.tokenizer(["a dog", "blurry"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        emb = pipe.text_encoder(ids)[0]
    cond, uncond = emb[:1], emb[1:]
    components = {**pipe.components, "scheduler": samplers.make_scheduler(name, pipe.scheduler.config)}
    t2i_pipe = StableDiffusionPipeline(**components)
    t2i_pipe.set_progress_bar_config(disable=True)

    def eps(x, t, e):
        return pipe.unet(x, t, encoder_hidden_states=e).sample

    spec = samplers.SAMPLERS[name]
    ours = samplers.denoise(
        eps,
        samplers.make_scheduler(name, pipe.scheduler.config),
        cond=cond,
        uncond=uncond,
        cfg_scale=6.0,
        steps=4,
        effective_steps=4,
        generator=torch.Generator().manual_seed(3),
        takes_generator=spec.takes_generator,
        shape=(1, 4, 8, 8),
    )
    theirs = t2i_pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        num_inference_steps=4,
        guidance_scale=6.0,
        height=16,
        width=16,
        generator=torch.Generator().manual_seed(3),
        output_type="latent",
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    i2i_pipe = StableDiffusionImg2ImgPipeline(
        **{**components, "scheduler": samplers.make_scheduler(name, pipe.scheduler.config)}
    )
    i2i_pipe.set_progress_bar_config(disable=True)
    init = ours.detach().clone()
    # Deforum strength 0.5 of 4 steps runs 2 steps = diffusers strength 0.5
    ours2 = samplers.denoise(
        eps,
        samplers.make_scheduler(name, pipe.scheduler.config),
        cond=cond,
        uncond=uncond,
        cfg_scale=6.0,
        steps=4,
        effective_steps=2,
        generator=torch.Generator().manual_seed(4),
        takes_generator=spec.takes_generator,
        init_latents=init,
    )
    theirs2 = i2i_pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        image=init,
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(4),
        output_type="latent",
    ).images
    torch.testing.assert_close(ours2, theirs2, atol=1e-5, rtol=1e-5)
