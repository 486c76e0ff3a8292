"""dfm's flow-matching loop (runtime/flow_matching.py) against diffusers' SD3 and Flux pipelines, on tiny
random models built offline: the same seed, init latents and prompt embeddings give the same latents."""

from __future__ import annotations

import pytest
import torch
from tiny_flow_models import T5_MAX_LENGTH, save_flow_models

from dfm.runtime.flow_matching import (
    FlowCond,
    calculate_shift,
    flow_denoise,
    flow_mu,
    flow_timesteps,
    flux_sigmas,
    flux_velocity,
    pack_latents,
    sd3_velocity,
    unpack_latents,
)

STEPS = 4
LATENT = 16  # latent height and width; the tiny VAEs scale by 2, so frames of 32x32 pixels
TOL = dict(rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def flow_models(tmp_path_factory):
    torch.set_num_threads(1)
    return save_flow_models(tmp_path_factory.mktemp("flow_models"))


def gen(seed: int = 7) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def init_latents(seed: int = 3) -> torch.Tensor:
    """A frame's latents as dfm would hand them over (VAE latents, shifted and scaled)."""
    return torch.randn((1, 16, LATENT, LATENT), generator=gen(seed))


def fresh_scheduler(pipe):
    """A scheduler of the model's own config, one per denoise (schedulers keep state)."""
    return type(pipe.scheduler).from_config(pipe.scheduler.config)


def test_tiny_pipelines_load_with_their_t5(flow_models):
    """The saved folders load back whole: SD3 with its third (T5) encoder, Flux with its T5, and the
    in-code T5 tokenizer survives the round trip without unknown tokens."""
    sd3, flux = flow_models["sd3"], flow_models["flux"]
    assert sd3.text_encoder_3 is not None and flux.text_encoder_2 is not None
    ids = sd3.tokenizer_3("a red cat").input_ids
    assert sd3.tokenizer_3.unk_token_id not in ids and ids[-1] == sd3.tokenizer_3.eos_token_id
    assert sd3.vae.config.latent_channels == 16 and sd3.vae.config.shift_factor != 0
    embeds = sd3.encode_prompt("a red cat", None, None, do_classifier_free_guidance=False,
                               max_sequence_length=T5_MAX_LENGTH)[0]
    assert embeds[:, 77:].abs().sum() > 0  # the T5 tokens follow CLIP's 77, and are not the zeros of "no T5"


# ---- SD3 ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd3(flow_models):
    pipe = flow_models["sd3"]
    cond, neg, pooled, neg_pooled = pipe.encode_prompt(
        "a red cat", None, None, do_classifier_free_guidance=True, negative_prompt="blurry",
        max_sequence_length=T5_MAX_LENGTH)
    return pipe, FlowCond(cond, pooled), FlowCond(neg, neg_pooled)


def sd3_embeds(cond: FlowCond, uncond: FlowCond) -> dict:
    return dict(prompt_embeds=cond.embeds, pooled_prompt_embeds=cond.pooled, negative_prompt_embeds=uncond.embeds,
                negative_pooled_prompt_embeds=uncond.pooled)


@pytest.mark.parametrize("effective_steps", [2, 3])
@pytest.mark.parametrize("cfg", [1.0, 5.0])
def test_sd3_img2img_equals_diffusers(sd3, effective_steps, cfg):
    from diffusers import StableDiffusion3Img2ImgPipeline

    pipe, cond, uncond = sd3
    init = init_latents()
    i2i = StableDiffusion3Img2ImgPipeline(**pipe.components)
    want = i2i(image=init, strength=effective_steps / STEPS, num_inference_steps=STEPS, guidance_scale=cfg,
               height=LATENT * 2, width=LATENT * 2, generator=gen(), output_type="latent",
               max_sequence_length=T5_MAX_LENGTH, **sd3_embeds(cond, uncond)).images
    got = flow_denoise(sd3_velocity(pipe.transformer), fresh_scheduler(pipe), cond=cond, uncond=uncond,
                       cfg_scale=cfg, steps=STEPS, effective_steps=effective_steps, generator=gen(),
                       init_latents=init)
    assert got.shape == want.shape == init.shape
    torch.testing.assert_close(got, want, **TOL)
    assert (got - init).abs().max() > 0.1  # the frame was really re-diffused


def test_sd3_txt2img_equals_diffusers(sd3):
    pipe, cond, uncond = sd3
    want = pipe(num_inference_steps=STEPS, guidance_scale=5.0, height=LATENT * 2, width=LATENT * 2,
                generator=gen(), output_type="latent", max_sequence_length=T5_MAX_LENGTH,
                **sd3_embeds(cond, uncond)).images
    got = flow_denoise(sd3_velocity(pipe.transformer), fresh_scheduler(pipe), cond=cond, uncond=uncond,
                       cfg_scale=5.0, steps=STEPS, effective_steps=STEPS, generator=gen(),
                       shape=(1, 16, LATENT, LATENT))
    torch.testing.assert_close(got, want, **TOL)


def test_sd3_dynamic_shift_equals_diffusers(sd3):
    """SD3 pipelines compute `mu` from the frame size when the scheduler shifts dynamically."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Img2ImgPipeline

    pipe, cond, uncond = sd3
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                max_image_seq_len=256)
    i2i = StableDiffusion3Img2ImgPipeline(**{**pipe.components, "scheduler": scheduler})
    init = init_latents()
    want = i2i(image=init, strength=0.75, num_inference_steps=STEPS, guidance_scale=3.0, height=LATENT * 2,
               width=LATENT * 2, generator=gen(), output_type="latent", max_sequence_length=T5_MAX_LENGTH,
               **sd3_embeds(cond, uncond)).images
    mu = flow_mu(scheduler.config, LATENT, LATENT, patch_size=pipe.transformer.config.patch_size,
                 default_max_shift=1.16)
    assert mu == pytest.approx(calculate_shift(64, 16, 256, 0.5, 1.15))  # the config's own max_shift
    got = flow_denoise(sd3_velocity(pipe.transformer), type(scheduler).from_config(scheduler.config), cond=cond,
                       uncond=uncond, cfg_scale=3.0, steps=STEPS, effective_steps=3, generator=gen(),
                       init_latents=init, mu=mu)
    torch.testing.assert_close(got, want, **TOL)


def test_sd3_zero_steps_keeps_the_frame(sd3):
    pipe, cond, uncond = sd3
    init = init_latents()
    g = gen()
    got = flow_denoise(sd3_velocity(pipe.transformer), fresh_scheduler(pipe), cond=cond, uncond=uncond,
                       cfg_scale=5.0, steps=STEPS, effective_steps=0, generator=g, init_latents=init)
    assert got is init
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=gen()))  # nothing was drawn


def test_sd3_deterministic(sd3):
    pipe, cond, uncond = sd3

    def run():
        return flow_denoise(sd3_velocity(pipe.transformer), fresh_scheduler(pipe), cond=cond, uncond=uncond,
                            cfg_scale=5.0, steps=STEPS, effective_steps=3, generator=gen(),
                            init_latents=init_latents())

    a, b = run(), run()
    assert a.numpy().tobytes() == b.numpy().tobytes()


def test_full_strength_img2img_ignores_the_init(sd3):
    """effective_steps == steps starts at sigma 1: pure noise, the txt2img result (Deforum strength 0)."""
    pipe, cond, uncond = sd3
    kw = dict(cond=cond, uncond=uncond, cfg_scale=5.0, steps=STEPS, effective_steps=STEPS)
    vel = sd3_velocity(pipe.transformer)
    from_init = flow_denoise(vel, fresh_scheduler(pipe), generator=gen(), init_latents=init_latents(), **kw)
    from_noise = flow_denoise(vel, fresh_scheduler(pipe), generator=gen(), shape=(1, 16, LATENT, LATENT), **kw)
    torch.testing.assert_close(from_init, from_noise, **TOL)


# ---- the schedule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("effective_steps", [0, 1, 2, 3, 4])
def test_flow_timesteps_are_the_pipelines(flow_models, effective_steps):
    """The kept timesteps and begin index are those of diffusers' `get_timesteps` for the same strength."""
    from diffusers import StableDiffusion3Img2ImgPipeline

    pipe = flow_models["sd3"]
    i2i = StableDiffusion3Img2ImgPipeline(**{**pipe.components, "scheduler": fresh_scheduler(pipe)})
    i2i.scheduler.set_timesteps(STEPS)
    want, n = i2i.get_timesteps(STEPS, effective_steps / STEPS, "cpu")
    ours = fresh_scheduler(pipe)
    got = flow_timesteps(ours, STEPS, effective_steps, "cpu")
    assert n == len(got) == effective_steps
    assert torch.equal(got, want)
    assert ours.begin_index == i2i.scheduler.begin_index


def test_flux_schedule_shift(flow_models):
    pipe = flow_models["flux"]
    mu = flow_mu(pipe.scheduler.config, LATENT, LATENT)
    assert mu == pytest.approx(calculate_shift(64))  # (16 / 2) ** 2 image tokens
    scheduler = fresh_scheduler(pipe)
    timesteps = flow_timesteps(scheduler, STEPS, STEPS, "cpu", mu=mu, sigmas=flux_sigmas(STEPS))
    assert len(timesteps) == STEPS and scheduler.sigmas[0] == 1.0 and scheduler.sigmas[-1] == 0.0


def test_pack_unpack_round_trip():
    x = torch.randn(2, 16, 6, 10, generator=gen())
    packed = pack_latents(x)
    assert packed.shape == (2, 15, 64)
    assert torch.equal(unpack_latents(packed, 6, 10), x)
    from diffusers import FluxPipeline

    assert torch.equal(packed, FluxPipeline._pack_latents(x, 2, 16, 6, 10))
    assert torch.equal(unpack_latents(packed, 6, 10), FluxPipeline._unpack_latents(packed, 12, 20, 2))


# ---- Flux --------------------------------------------------------------------------------------------------


def flux_cond(pipe, prompt: str) -> FlowCond:
    embeds, pooled, _text_ids = pipe.encode_prompt(prompt, None, max_sequence_length=T5_MAX_LENGTH)
    return FlowCond(embeds, pooled)


def flux_run(pipe, *, guidance, effective_steps, init=None, uncond=None, cfg=1.0, g=None):
    return flow_denoise(flux_velocity(pipe.transformer), fresh_scheduler(pipe), cond=flux_cond(pipe, "a red cat"),
                        uncond=uncond, cfg_scale=cfg, steps=STEPS, effective_steps=effective_steps,
                        generator=g or gen(), init_latents=init,
                        shape=None if init is not None else (1, 16, LATENT, LATENT),
                        mu=flow_mu(pipe.scheduler.config, LATENT, LATENT), sigmas=flux_sigmas(STEPS),
                        guidance=guidance)


@pytest.mark.parametrize("effective_steps", [2, 3])
def test_flux_img2img_equals_diffusers(flow_models, effective_steps):
    from diffusers import FluxImg2ImgPipeline

    pipe = flow_models["flux"]
    cond = flux_cond(pipe, "a red cat")
    init = init_latents()
    i2i = FluxImg2ImgPipeline(**pipe.components)
    packed = i2i(image=init, strength=effective_steps / STEPS, num_inference_steps=STEPS, guidance_scale=3.5,
                 height=LATENT * 2, width=LATENT * 2, generator=gen(), output_type="latent",
                 prompt_embeds=cond.embeds, pooled_prompt_embeds=cond.pooled,
                 max_sequence_length=T5_MAX_LENGTH).images
    want = unpack_latents(packed, LATENT, LATENT)
    got = flux_run(pipe, guidance=3.5, effective_steps=effective_steps, init=init)
    torch.testing.assert_close(got, want, **TOL)
    assert (got - init).abs().max() > 0.1


def test_flux_txt2img_equals_diffusers(flow_models):
    pipe = flow_models["flux"]
    cond = flux_cond(pipe, "a red cat")
    packed = pipe(num_inference_steps=STEPS, guidance_scale=3.5, height=LATENT * 2, width=LATENT * 2,
                  generator=gen(), output_type="latent", prompt_embeds=cond.embeds, pooled_prompt_embeds=cond.pooled,
                  max_sequence_length=T5_MAX_LENGTH).images
    got = flux_run(pipe, guidance=3.5, effective_steps=STEPS)
    torch.testing.assert_close(got, unpack_latents(packed, LATENT, LATENT), **TOL)


def test_flux_guidance_changes_the_result(flow_models):
    pipe = flow_models["flux"]
    a = flux_run(pipe, guidance=1.0, effective_steps=3, init=init_latents())
    b = flux_run(pipe, guidance=6.0, effective_steps=3, init=init_latents())
    assert (a - b).abs().max() > 1e-4


def test_flux_schnell_true_cfg_equals_diffusers(flow_models):
    """A Flux without guidance embedding (schnell) under diffusers' "true CFG" with a negative prompt."""
    from diffusers import FluxImg2ImgPipeline

    pipe = flow_models["flux_schnell"]
    cond, uncond = flux_cond(pipe, "a red cat"), flux_cond(pipe, "blurry")
    init = init_latents()
    packed = FluxImg2ImgPipeline(**pipe.components)(
        image=init, strength=0.75, num_inference_steps=STEPS, true_cfg_scale=4.0, height=LATENT * 2,
        width=LATENT * 2, generator=gen(), output_type="latent", prompt_embeds=cond.embeds,
        pooled_prompt_embeds=cond.pooled, negative_prompt_embeds=uncond.embeds,
        negative_pooled_prompt_embeds=uncond.pooled, max_sequence_length=T5_MAX_LENGTH).images
    got = flux_run(pipe, guidance=None, effective_steps=3, init=init, uncond=uncond, cfg=4.0)
    torch.testing.assert_close(got, unpack_latents(packed, LATENT, LATENT), **TOL)


def test_flux_zero_steps_and_determinism(flow_models):
    pipe = flow_models["flux"]
    init = init_latents()
    assert flux_run(pipe, guidance=3.5, effective_steps=0, init=init) is init
    a = flux_run(pipe, guidance=3.5, effective_steps=3, init=init_latents())
    b = flux_run(pipe, guidance=3.5, effective_steps=3, init=init_latents())
    assert a.numpy().tobytes() == b.numpy().tobytes()


def test_flux_dev_needs_guidance(flow_models):
    pipe = flow_models["flux"]
    with pytest.raises(ValueError, match="guidance"):
        flux_run(pipe, guidance=None, effective_steps=2, init=init_latents())
