"""SDXL: a tiny random SDXL folder is detected, loads both text encoders, renders in 2D and 3D, and dfm's
loop matches diffusers' StableDiffusionXLImg2ImgPipeline for the same embeddings and seed."""

import json

import pytest
import torch
from sdxl_models import save_sdxl
from tiny_models import make_table

from dfm.compiler.prompt_syntax import pieces_json
from dfm.runtime import RenderError, samplers
from dfm.runtime.device import pick_device
from dfm.runtime.models import StableDiffusion, folder_family, resolve_source
from dfm.runtime.prompts import PromptEncoder
from dfm.runtime.render import render


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    torch.set_num_threads(1)
    return save_sdxl(tmp_path_factory.mktemp("sdxl"))


def load(folder) -> StableDiffusion:
    sd = StableDiffusion(resolve_source(str(folder)), pick_device("cpu"))
    sd.load()
    return sd


def test_family_is_detected_from_the_folder(sdxl, tiny_models, tmp_path):
    assert folder_family(sdxl["folder"], "x") == "sdxl"
    assert folder_family(tiny_models["folder"], "x") == "sd15"
    # SD3 and Flux are families now (tests/test_flow_families.py, tests/test_flow_render.py); an inpainting
    # pipeline is still refused by name
    cls = "StableDiffusionInpaintPipeline"
    (tmp_path / cls).mkdir()
    (tmp_path / cls / "model_index.json").write_text(json.dumps({"_class_name": cls, "unet": ["x", "y"]}))
    with pytest.raises(RenderError, match="inpainting"):
        folder_family(tmp_path / cls, "x")


def test_prompt_encoding_matches_diffusers_encode_prompt(sdxl):
    """Both encoders' penultimate layers side by side, pooled from encoder 2: what diffusers makes."""
    sd = load(sdxl["folder"])
    assert sd.family == "sdxl"
    packed = PromptEncoder(sd)(pieces_json("a red cat"))
    assert packed.shape == (1, 78, 20)
    cond, _, pooled, _ = sdxl["pipe"].encode_prompt("a red cat", device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(packed[:, :-1], cond.float())
    torch.testing.assert_close(packed[0, -1, :16], pooled[0].float())
    assert not packed[0, -1, 16:].any()  # the pooled row is zero after its 16 features
    weighted = PromptEncoder(sd)(pieces_json("a (red:1.4) cat"))
    assert weighted.shape == packed.shape and not torch.equal(weighted[:, :-1], packed[:, :-1])
    torch.testing.assert_close(weighted[0, -1], packed[0, -1])  # the pooled embedding is never weighted
    long = PromptEncoder(sd)(pieces_json(" ".join(["cat"] * 80)))
    assert long.shape == (1, 2 * 77 + 1, 20)


@pytest.mark.parametrize("name", ["euler", "lcm", "euler_trailing"])
def test_same_latents_as_diffusers_sdxl_img2img(sdxl, name):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = sdxl["pipe"]
    sd = load(sdxl["folder"])
    enc = PromptEncoder(sd)
    cond, uncond = enc(pieces_json("a dog")), enc(pieces_json("blurry"))
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    spec = samplers.SAMPLERS[name]
    ours = samplers.denoise(
        sd.eps, samplers.make_scheduler(name, sd.scheduler_config), cond=cond, uncond=uncond, cfg_scale=5.0,
        steps=4, effective_steps=2, generator=torch.Generator().manual_seed(4), takes_generator=spec.takes_generator,
        init_latents=init,
    )
    i2i = StableDiffusionXLImg2ImgPipeline(
        **{**pipe.components, "scheduler": samplers.make_scheduler(name, pipe.scheduler.config)},
        requires_aesthetics_score=False,
    )
    i2i.set_progress_bar_config(disable=True)
    theirs = i2i(
        prompt_embeds=cond[:, :-1], pooled_prompt_embeds=cond[:, -1, :16],
        negative_prompt_embeds=uncond[:, :-1], negative_pooled_prompt_embeds=uncond[:, -1, :16],
        image=init, strength=0.5, num_inference_steps=4, guidance_scale=5.0,
        generator=torch.Generator().manual_seed(4), output_type="latent",
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["2d", "3d", "none"])
def test_sdxl_folder_renders(sdxl, tmp_path, mode):
    extra = {"depth_model": "", "use_depth_warping": False} if mode == "3d" else {}
    table = make_table(3, mode=mode, cadence=1, sampler="lcm", **extra)
    report = render(table, tmp_path / "out", model=str(sdxl["folder"]), device="cpu")
    assert report.frames == 3
    assert len(list((tmp_path / "out" / "frames").glob("*.png"))) == 3
    assert any("1024x1024" in w for w in report.warnings)  # 64x64 is far below SDXL's size


@pytest.mark.parametrize("cfg", [0.0, 1.0])
def test_a_render_at_cfg_one_or_below_skips_the_negative_pass(sdxl, tmp_path, cfg):
    """Turbo recipes say guidance 0: that is the conditional prediction alone, never the unconditional one."""
    from torch.nn.modules.module import register_module_forward_pre_hook

    batches = []

    def hook(module, args):
        if type(module).__name__ == "UNet2DConditionModel":
            batches.append(args[0].shape[0])

    table = make_table(1, mode="none", sampler="euler_trailing", steps=2, cfg_scale=cfg)
    handle = register_module_forward_pre_hook(hook)
    try:
        report = render(table, tmp_path / "out", model=str(sdxl["folder"]), device="cpu")
    finally:
        handle.remove()
    assert report.unet_calls == 2 and batches == [1, 1]  # one call per step, no negative in the batch


def test_cfg_one_or_below_runs_one_unet_call_per_step(sdxl):
    sd = load(sdxl["folder"])
    enc = PromptEncoder(sd)
    sd.unet_calls = 0
    samplers.denoise(sd.eps, samplers.make_scheduler("euler_trailing", sd.scheduler_config),
                     cond=enc(pieces_json("a cat")), uncond=None, cfg_scale=1.0, steps=2, effective_steps=2,
                     generator=torch.Generator().manual_seed(1), takes_generator=True, shape=(1, 4, 8, 8))
    assert sd.unet_calls == 2


def test_the_time_ids_are_the_frames_size_and_made_once_per_size_and_batch(sdxl):
    sd = load(sdxl["folder"])
    z = PromptEncoder(sd)(pieces_json("a cat"))
    s = sd.latent_scale
    hidden, added = sd.sdxl_conditioning(torch.cat([z, z]), (8, 12))
    assert torch.equal(hidden, torch.cat([z, z])[:, :-1])
    assert added["time_ids"].tolist() == [[8 * s, 12 * s, 0, 0, 8 * s, 12 * s]] * 2
    assert sd.sdxl_conditioning(torch.cat([z, z]), (8, 12))[1]["time_ids"] is added["time_ids"]  # not per call
    assert sd.sdxl_conditioning(z, (8, 12))[1]["time_ids"].tolist() == [[8 * s, 12 * s, 0, 0, 8 * s, 12 * s]]
    assert sd.sdxl_conditioning(z, (12, 8))[1]["time_ids"].tolist() == [[12 * s, 8 * s, 0, 0, 12 * s, 8 * s]]


def test_fp16_keeps_sdxl_vae_in_float32_unless_it_is_fp16_fixed(sdxl, tmp_path):
    from dfm.runtime.device import Placement

    fp16 = Placement(torch.device("cpu"), torch.float16)
    sd = StableDiffusion(resolve_source(str(sdxl["folder"])), fp16)
    assert sd.vae_dtype == torch.float32  # SDXL's VAE config: force_upcast
    import shutil

    fixed = tmp_path / "fixed"
    shutil.copytree(sdxl["folder"], fixed)
    cfg = json.loads((fixed / "vae" / "config.json").read_text())
    (fixed / "vae" / "config.json").write_text(json.dumps({**cfg, "force_upcast": False}))
    assert StableDiffusion(resolve_source(str(fixed)), fp16).vae_dtype == torch.float16


def test_single_file_sdxl_is_detected_and_loads_the_same_weights(sdxl):
    from dfm.runtime.models import detect_family

    assert detect_family(sdxl["bare"], False) == "sdxl"
    one, folder = load(sdxl["safetensors"]), load(sdxl["folder"])
    assert one.family == "sdxl"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(one, part).state_dict(), getattr(folder, part).state_dict()
        assert a.keys() == b.keys(), part
        assert all(torch.equal(a[k], b[k]) for k in a), part
    enc = PromptEncoder(one)(pieces_json("a cat"))
    torch.testing.assert_close(enc, PromptEncoder(folder)(pieces_json("a cat")))


def test_bare_single_file_sdxl_gets_the_shipped_skeleton_with_both_tokenizers(sdxl, tmp_path):
    from tiny_models import write_tokenizer

    from dfm.runtime.models import config_skeleton

    write_tokenizer(sdxl["bare"].parent / "tokenizer")
    skeleton = config_skeleton(sdxl["bare"], False, tmp_path)
    assert skeleton.name == "sdxl"
    for part in ("tokenizer", "tokenizer_2"):
        assert (skeleton / part / "vocab.json").is_file() and (skeleton / part / "merges.txt").is_file()
    assert json.loads((skeleton / "tokenizer_2" / "tokenizer_config.json").read_text())["pad_token"] == "!"


def test_shipped_sdxl_skeleton_has_sdxl_base_shapes():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from dfm.runtime.models import CONFIGS

    root = CONFIGS / "sdxl"
    read = lambda rel: json.loads((root / rel).read_text())  # noqa: E731
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(read("unet/config.json"))
        vae = AutoencoderKL.from_config(read("vae/config.json"))
        te1 = CLIPTextModel(CLIPTextConfig(**read("text_encoder/config.json")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**read("text_encoder_2/config.json")))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # stabilityai/stable-diffusion-xl-base-1.0's parameter counts
    assert (count(unet), count(vae), count(te1), count(te2)) == (2_567_463_684, 83_653_863, 123_060_480, 694_659_840)
    assert vae.config.force_upcast and vae.config.scaling_factor == 0.13025
    assert read("model_index.json")["_class_name"] == "StableDiffusionXLPipeline"


def test_a_turbo_folder_renders_with_its_family_defaults(sdxl, tmp_path, monkeypatch):
    """An SDXL folder whose scheduler has SDXL-Turbo's trailing spacing is sdxl-turbo: compiled without steps,
    cfg_scale or sampler it gets 4 steps, cfg 0 and euler_a_trailing, so each img2img frame is one UNet call
    of one latent (int(0.35 × 4) = 1)."""
    import shutil

    from diffusers import UNet2DConditionModel

    from dfm.compiler.compile import compile_source

    turbo = tmp_path / "turbo"
    shutil.copytree(sdxl["folder"], turbo)
    sched = turbo / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "_class_name": "EulerAncestralDiscreteScheduler",
                                 "timestep_spacing": "trailing"}))
    result = compile_source(f'dfm 1\nmode 2d\nsize 64x64\nframes 3\nmodel "{turbo}"\nprompt 0 "a cat"\n', "s.dfm")
    table = result.table
    assert (table.settings.sampler, set(table["steps"]), set(table["cfg_scale"])) == ("euler_a_trailing", {4}, {0.0})
    assert any(d.code == "DFM207" and "SDXL-Turbo" in d.message for d in result.diagnostics)
    batches = []
    forward = UNet2DConditionModel.forward

    def spy(self, sample, *args, **kwargs):
        batches.append(sample.shape[0])
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    report = render(table, tmp_path / "out", model=str(turbo), device="cpu")
    assert report.unet_calls == 4 + 1 + 1 and batches == [1] * 6
    assert not any("1024x1024" in w for w in report.warnings)  # SDXL-Turbo is trained at 512x512
