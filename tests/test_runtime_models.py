"""Model loading: diffusers folder, single .safetensors/.ckpt, hub ids offline, sha256, clear errors."""

import json
import time

import pytest
import torch
from dfm.runtime import RenderError
from dfm.runtime.device import pick_device
from dfm.runtime.hashing import cached_sha256, sha256_file, verify_sha256
from dfm.runtime.models import CONFIGS, StableDiffusion, resolve_source
from safetensors.torch import save_file

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
