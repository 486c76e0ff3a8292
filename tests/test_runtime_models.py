"""Model loading: diffusers folder, single .safetensors/.ckpt, hub ids offline, sha256, clear errors."""

import json
import time

import pytest
import torch
from safetensors.torch import save_file

from dfm.runtime import RenderError
from dfm.runtime.device import pick_device
from dfm.runtime.hashing import cached_sha256, sha256_file, verify_sha256
from dfm.runtime.models import CONFIGS, StableDiffusion, resolve_source

CPU = pick_device("cpu")


def load(spec, **kw):
    return StableDiffusion(resolve_source(str(spec)), CPU, **kw)


def test_folder_and_single_files_load_the_same_weights(tiny_models):
    folder = load(tiny_models["folder"])
    single = load(tiny_models["safetensors"])
    ckpt = load(tiny_models["ckpt"], allow_pickle=True)
    for part in ("unet", "vae", "text_encoder"):
        ref = getattr(folder, part).state_dict()
        for other in (single, ckpt):
            got = getattr(other, part).state_dict()
            assert set(got) == set(ref), part
            assert all(torch.equal(got[k], ref[k]) for k in ref), part
    assert torch.equal(folder.encode_text("a cat"), single.encode_text("a cat"))
    assert folder.text_encoder_calls == 1


def test_components_load_lazily(tiny_models):
    sd = load(tiny_models["folder"])
    assert "unet" not in sd.__dict__ and "vae" not in sd.__dict__
    sd.encode_text("a dog")
    assert "text_encoder" in sd.__dict__ and "unet" not in sd.__dict__ and "vae" not in sd.__dict__


def test_load_loads_every_component_and_folder_is_always_set(tiny_models):
    sd = load(tiny_models["folder"])
    assert sd.folder == tiny_models["folder"].resolve()
    sd.load()
    assert {"tokenizer", "text_encoder", "unet", "vae", "scheduler_config"} <= set(sd.__dict__)
    assert load(tiny_models["safetensors"]).folder is None  # a single file loads through one pipeline


def test_ckpt_refused_without_allow_pickle(tiny_models):
    with pytest.raises(RenderError) as e:
        load(tiny_models["ckpt"])
    assert "pickle" in e.value.message and "--allow-pickle" in e.value.help


def test_missing_folder_and_file_fail_clearly(tmp_path):
    with pytest.raises(RenderError) as e:
        resolve_source(str(tmp_path / "nowhere" / "model"))
    assert "does not exist" in e.value.message
    with pytest.raises(RenderError, match="does not exist"):
        resolve_source(str(tmp_path / "model.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RenderError, match="not a diffusers model"):
        resolve_source(str(tmp_path / "empty"))


def test_offline_hub_id_fails_fast_with_a_fix():
    start = time.perf_counter()
    with pytest.raises(RenderError) as e:
        load("someone/not-a-cached-model")
    assert time.perf_counter() - start < 5
    assert "not in the local Hugging Face cache" in e.value.message
    assert "--model" in e.value.help


def test_single_file_without_config_or_tokenizer_says_what_is_missing(tiny_models, tmp_path):
    sd = load(tiny_models["bare"])  # tiny weights: no known family
    with pytest.raises(RenderError) as e:
        _ = sd.unet
    assert "model family" in e.value.message and "model_index.json" in e.value.help
    # an SD 1.x-shaped checkpoint without a tokenizer anywhere: the tokenizer is named as the missing piece
    fake = tmp_path / "sd15.safetensors"
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    save_file({key: torch.zeros(320, 768)}, str(fake))
    with pytest.raises(RenderError) as e:
        _ = load(fake).unet
    assert "tokenizer" in e.value.message and "vocab.json" in e.value.help


def test_sha256_verified_cached_and_mismatch_is_an_error(tiny_models, tmp_path):
    path = tiny_models["safetensors"]
    cache = tmp_path / "hashes.json"
    digest = sha256_file(path)
    assert verify_sha256(path, digest.upper(), cache) == digest
    entry = json.loads(cache.read_text())[str(path.resolve())]
    assert entry["sha256"] == digest and entry["size"] == path.stat().st_size
    # the cache is trusted while size and mtime match (a planted value proves it was read, not recomputed)
    cache.write_text(json.dumps({str(path.resolve()): {**entry, "sha256": "f" * 64}}))
    assert cached_sha256(path, cache) == "f" * 64
    cache.unlink()
    with pytest.raises(RenderError) as e:
        verify_sha256(path, "0" * 64, cache)
    assert digest in e.value.message and "0" * 64 in e.value.message


def test_sha256_through_the_loader(tiny_models):
    with pytest.raises(RenderError, match="sha256"):
        load(tiny_models["safetensors"], sha256="ab" * 32)
    sd = load(tiny_models["safetensors"], sha256=sha256_file(tiny_models["safetensors"]))
    assert sd.sha256 == sha256_file(tiny_models["safetensors"])
    with pytest.raises(RenderError, match="only a single model file"):
        load(tiny_models["folder"], sha256="ab" * 32)


def test_broken_tokenizer_is_caught(tiny_models, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["folder"], broken)
    cfg = json.loads((broken / "text_encoder" / "config.json").read_text())
    cfg["vocab_size"] = 49408  # as a real CLIP text encoder, while the tokenizer has ~520 tokens
    (broken / "text_encoder" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RenderError, match="tokenizer .* is broken"):
        _ = load(broken).tokenizer


def test_explicit_devices():
    assert pick_device("cpu").dtype == torch.float32
    with pytest.raises(RenderError, match="unknown device"):
        pick_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(RenderError, match="no CUDA"):
            pick_device("cuda")


@pytest.mark.parametrize(
    "family,unet_params,vae_params,text_params",
    [
        ("sd15", 859_520_964, 83_653_863, 123_060_480),
    ],
)
def test_shipped_config_skeletons_describe_the_real_models(family, unet_params, vae_params, text_params):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = CONFIGS / family
    with torch.device("meta"):  # no memory: only the shapes are built
        unet = UNet2DConditionModel.from_config(json.loads((root / "unet" / "config.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((root / "vae" / "config.json").read_text()))
        text = CLIPTextModel(CLIPTextConfig(**json.loads((root / "text_encoder" / "config.json").read_text())))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(unet), count(vae), count(text)) == (unet_params, vae_params, text_params)


def test_sd21_skeleton_builds():
    from diffusers import UNet2DConditionModel

    cfg = json.loads((CONFIGS / "sd21" / "unet" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg)
    assert unet.config.cross_attention_dim == 1024
    sched = json.loads((CONFIGS / "sd21" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction"


@pytest.mark.parametrize("part", ["text_encoder", "unet", "scheduler"])
def test_a_folder_missing_a_component_names_it(tiny_models, tmp_path, part):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_models["folder"], folder)
    shutil.rmtree(folder / part)
    sd = StableDiffusion(resolve_source(str(folder)), pick_device("cpu"))
    with pytest.raises(RenderError, match=f"no {part}/ folder") as e:
        sd.load()
    assert "tokenizer" not in str(e.value)  # not misread as a broken tokenizer


def test_library_log_lines_and_warnings_are_quiet_while_loading(capsys):
    import warnings

    import transformers.utils.logging as tlog

    from dfm.runtime.models import quiet_loading

    before = tlog.get_verbosity()
    with quiet_loading():
        tlog.get_logger("transformers").warning("modules kept in float32: []")
        warnings.warn("a library deprecation", FutureWarning, stacklevel=1)
    assert "float32" not in capsys.readouterr().err and tlog.get_verbosity() == before


# ---- guidance-embedded LCM UNets (time_cond_proj_dim) -------------------------------------------------------


@pytest.fixture(scope="module")
def lcm(tiny_models, tmp_path_factory):
    """The tiny SD model with a UNet that takes a guidance embedding (as LCM_Dreamshaper_v7's does) and
    diffusers' LCMScheduler, saved as a diffusers folder."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    from tiny_models import TINY_UNET

    base = tiny_models["pipe"]
    torch.manual_seed(5)
    unet = UNet2DConditionModel(**TINY_UNET, cross_attention_dim=8, time_cond_proj_dim=32)
    with torch.no_grad():  # a visible cond_proj, so that a wrong embedding changes the output
        unet.time_embedding.cond_proj.weight.normal_(0, 1)
    pipe = LatentConsistencyModelPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet,
        scheduler=LCMScheduler.from_config(base.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = tmp_path_factory.mktemp("lcm") / "lcm"
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return {"folder": folder, "pipe": pipe}


def test_a_guidance_embedded_unet_is_an_lcm(lcm, tiny_models):
    sd = load(lcm["folder"])
    assert (sd.model_family.name, sd.family, sd.guidance_embedded) == ("lcm", "sd15", True)
    assert not load(tiny_models["folder"]).guidance_embedded


@pytest.mark.parametrize("cfg", [1.0, 6.0])
def test_lcm_latents_match_diffusers_latent_consistency_pipeline(lcm, cfg):
    from dfm.runtime import samplers

    sd = load(lcm["folder"])
    cond = sd.encode_text("a red cat")
    sd.set_guidance_scale(cfg)
    sd.unet_calls = 0
    ours = samplers.denoise(
        sd.eps, samplers.make_scheduler("lcm", sd.scheduler_config), cond=cond, uncond=None, cfg_scale=cfg,
        steps=4, effective_steps=4, generator=torch.Generator().manual_seed(3), takes_generator=True,
        shape=(1, 4, 8, 8),
    )
    assert sd.unet_calls == 4  # one conditional pass per step, never an unconditional one
    pipe = lcm["pipe"]
    pipe.scheduler = samplers.make_scheduler("lcm", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt_embeds=cond, num_inference_steps=4, guidance_scale=cfg, height=16, width=16,
                  generator=torch.Generator().manual_seed(3), output_type="latent").images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_the_guidance_scale_reaches_the_unet(lcm):
    from dfm.runtime.models import guidance_embedding

    sd = load(lcm["folder"])
    x, t, cond = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor(500), None
    cond = sd.encode_text("a cat").repeat(2, 1, 1)
    sd.set_guidance_scale(2.0)
    two = sd.eps(x, t, cond)
    sd.set_guidance_scale(8.0)
    eight = sd.eps(x, t, cond)
    assert two.shape == (2, 4, 8, 8) and not torch.allclose(two, eight)
    emb = guidance_embedding(torch.tensor([0.0, 1.0]), 7)  # an odd width is zero-padded
    assert emb.shape == (2, 7) and torch.equal(emb[0], torch.tensor([0, 0, 0, 1, 1, 1, 0.0]))
    assert emb[:, -1].abs().sum() == 0


def test_an_lcm_folder_renders_with_the_rows_cfg(lcm, tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel
    from tiny_models import make_table

    from dfm.runtime.models import guidance_embedding
    from dfm.runtime.render import render

    calls = []  # (batch, timestep_cond) of every UNet call
    forward = UNet2DConditionModel.forward

    def spy(self, sample, *args, **kwargs):
        calls.append((sample.shape[0], kwargs.get("timestep_cond")))
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    table = make_table(3, mode="2d", sampler="lcm", steps=4, cfg_scale=[2.0, 2.0, 6.0])
    report = render(table, tmp_path / "out", model=str(lcm["folder"]), device="cpu")
    assert report.frames == 3
    # the steps the table says, one latent each: no unconditional pass, whatever the cfg_scale
    steps = [int(s) for s in table["effective_steps"]]
    assert report.unet_calls == sum(steps) == len(calls) and {b for b, _ in calls} == {1}
    # each frame's own scale is embedded (w = cfg - 1)
    want = [guidance_embedding(torch.tensor([c - 1.0]), 32) for c, n in zip([2.0, 2.0, 6.0], steps, strict=True)
            for _ in range(n)]
    assert all(torch.allclose(got, w) for (_, got), w in zip(calls, want, strict=True))


def test_render_model_override_warns_when_its_family_defaults_differ(tiny_models, tmp_path, monkeypatch):
    import shutil

    from dfm.compiler.compile import compile_source
    from dfm.runtime.models import family_warnings

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))

    def table(model_line: str):
        return compile_source(f'dfm 1\nprompt 0 "a cat"\nframes 2\n{model_line}', "s.dfm").table

    shutil.copytree(CONFIGS / "sdxl", tmp_path / "xl")  # configs only: the family is read, no weight
    xl = load(tmp_path / "xl")
    (w,) = family_warnings(table(""), xl)  # compiled for dfm's default SD 1.5, rendered with SDXL
    assert "Stable Diffusion XL" in w and "size 1024x1024 (the table has 512x512)" in w and "model \"" in w
    (w,) = family_warnings(table('model "stabilityai/sdxl-turbo"\n'), load(tiny_models["folder"]))
    assert "size, cfg_scale, steps, sampler came from SDXL-Turbo's defaults" in w
    assert family_warnings(table(f'model "{tiny_models["folder"]}"\n'), load(tiny_models["folder"])) == []
    assert family_warnings(table('model "someone/some-sd15-model"\n'), load(tiny_models["folder"])) == []


def test_an_epsilon_sd2_single_file_gets_an_epsilon_skeleton(tmp_path):
    """The shipped SD 2.x skeleton is 768-v's; a file told epsilon (2.1 base, SD-Turbo) must not load as v."""
    import struct

    from tiny_models import write_tokenizer

    from dfm.runtime.models import config_skeleton, detect_family

    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    raw = json.dumps({key: {"dtype": "F16", "shape": [320, 1024], "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "v2-1_512-base.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    write_tokenizer(tmp_path / "tokenizer")
    sd = load(path)
    assert detect_family(path, False) == "sd21" and sd.model_family.name == "sd21"
    eps = config_skeleton(path, False, tmp_path / "a", prediction="epsilon")
    v = config_skeleton(path, False, tmp_path / "b")
    read = lambda p: json.loads((p / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]  # noqa: E731
    assert (read(eps), read(v)) == ("epsilon", "v_prediction")


def test_a_guidance_embedded_lcm_single_file_is_refused_by_name(tmp_path):
    import struct

    shapes = {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
              "model.diffusion_model.time_embed.cond_proj.weight": [320, 256]}
    raw = json.dumps({k: {"dtype": "F16", "shape": v, "data_offsets": [0, 0]} for k, v in shapes.items()}).encode()
    path = tmp_path / "lcm_dreamshaper.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    sd = load(path)
    assert sd.model_family.name == "lcm"
    with pytest.raises(RenderError, match="guidance-embedded LCM") as e:
        sd.load()
    assert "diffusers folder" in e.value.help


def test_sdxl_below_768_warns_only_for_a_size_the_scene_set(tmp_path, monkeypatch):
    import shutil

    from dfm.compiler.compile import compile_source
    from dfm.runtime.models import family_warnings

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    shutil.copytree(CONFIGS / "sdxl", tmp_path / "xl")
    xl = load(tmp_path / "xl")

    def table(extra: str):
        return compile_source(f'dfm 1\nprompt 0 "a cat"\nframes 2\nmodel "{tmp_path / "xl"}"\n{extra}', "s.dfm").table

    assert family_warnings(table(""), xl) == []  # no size: the compiler gave it SDXL's 1024x1024
    (w,) = family_warnings(table("size 512x512\n"), xl)
    assert "SDXL renders at 512x512" in w and "size 1024x1024" in w
    assert family_warnings(table("size 1024x768\n"), xl) == []
    turbo = tmp_path / "sdxl-turbo"
    shutil.copytree(tmp_path / "xl", turbo)
    assert family_warnings(table("size 512x512\n").with_settings(model=str(turbo)), load(turbo)) == []  # 512² trained


def test_a_legacy_pickle_checkpoint_loads_as_weights_only(tmp_path):
    """A .pt saved in torch's legacy (non-zip) format cannot be memory-mapped: it is read whole, still with
    weights_only (it was refused with torch's mmap message)."""
    import torch

    from dfm.runtime.model_family import load_pickle_weights

    state = {"state_dict": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}}
    legacy, current = tmp_path / "legacy.pt", tmp_path / "current.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    torch.save(state, current)
    for path in (legacy, current):
        loaded = load_pickle_weights(path)
        assert list(loaded) == ["w"] and torch.equal(loaded["w"], state["state_dict"]["w"])
