"""SD3 / SD3.5 and Flux as model families: told from tiny diffusers folders, single files (headers only) and
hub ids, their defaults at compile time (DFM207), and what `dfm check` says where a scene asks for what a
rectified-flow model does not do (sampler, size, negatives, cfg, clip_skip, weights, AND, ControlNet)."""

import json
import shutil
import struct
from pathlib import Path

import pytest
from test_families import codes, compiled

from dfm.compiler import catalogue as cat
from dfm.compiler.compile import compile_source
from dfm.compiler.flow_family import nearest_sizes
from dfm.contract import families
from dfm.contract.families import UnsupportedModel, family_from_keys, file_family, folder_family, source_family
from dfm.dsl.formatter import format_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flux_zoom.dfm"


@pytest.fixture(scope="module")
def flow_folders(tmp_path_factory):
    """The tiny SD3, Flux-dev and Flux-schnell pipelines (tests/tiny_flow_models.py) saved as diffusers folders."""
    import torch
    from tiny_flow_models import build_flux_pipeline, build_sd3_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("flow")
    builds = {"sd3": lambda: build_sd3_pipeline(root / "b_sd3"),
              "flux": lambda: build_flux_pipeline(root / "b_flux"),
              "flux_schnell": lambda: build_flux_pipeline(root / "b_schnell", guidance_embeds=False)}
    out = {}
    for name, build in builds.items():
        build().save_pretrained(str(root / name), safe_serialization=True)
        out[name] = root / name
    return out


def copy_folder(src: Path, dest: Path, **edits) -> Path:
    """A copy of a saved folder with JSON files changed: edits["index"] / edits["transformer"] = {key: value}."""
    shutil.copytree(src, dest)
    files = {"index": "model_index.json", "transformer": "transformer/config.json"}
    for part, change in edits.items():
        path = dest / files[part]
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    return dest


def write_header(path: Path, shapes: dict[str, list[int]], metadata: dict | None = None) -> Path:
    """A .safetensors file of a header only: families reads nothing past it."""
    table = {k: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}
    if metadata:
        table["__metadata__"] = metadata
    raw = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


# ---- detection --------------------------------------------------------------------------------------------------


def test_each_tiny_folder_is_its_family(flow_folders):
    sd3 = folder_family(flow_folders["sd3"])
    assert (sd3.name, sd3.base, sd3.guess, sd3.flow) == ("sd3", "sd3", False, True)
    dev = folder_family(flow_folders["flux"])
    assert (dev.name, dev.base, dev.guess, dev.guidance_embedded) == ("flux-dev", "flux", False, True)
    assert "guidance_embeds true" in dev.why
    schnell = folder_family(flow_folders["flux_schnell"])
    assert (schnell.name, schnell.base, schnell.guidance_embedded) == ("flux-schnell", "flux", False)
    assert not folder_family(ROOT / "runtime" / "configs" / "sdxl").flow


def test_folder_variants_img2img_classes_and_names(flow_folders, tmp_path):
    img2img = copy_folder(flow_folders["flux"], tmp_path / "a", index={"_class_name": "FluxImg2ImgPipeline"})
    assert folder_family(img2img).name == "flux-dev"
    sd3_img2img = {"_class_name": "StableDiffusion3Img2ImgPipeline"}
    assert folder_family(copy_folder(flow_folders["sd3"], tmp_path / "b", index=sd3_img2img)).name == "sd3"
    # SD3.5 Large Turbo ships Large's configs: its name tells
    turbo = folder_family(copy_folder(flow_folders["sd3"], tmp_path / "stable-diffusion-3.5-large-turbo"))
    assert (turbo.name, turbo.base, turbo.guess) == ("sd35-turbo", "sd3", False)
    assert turbo.defaults() == {"size": (1024, 1024), "cfg_scale": 0.0, "steps": 4, "sampler": "flow_euler"}
    # SD3.5 Medium by its dual-attention layers, whatever the folder's name
    medium = folder_family(copy_folder(flow_folders["sd3"], tmp_path / "c", transformer={"dual_attention_layers": [0]}))
    assert (medium.name, medium.variant, medium.title) == ("sd3", "3.5-medium", "SD3.5 Medium")
    assert (medium.defaults()["steps"], medium.defaults()["cfg_scale"]) == (40, 4.5)
    large = folder_family(copy_folder(flow_folders["sd3"], tmp_path / "d", transformer={"num_layers": 38}))
    assert large.variant == "3.5-large" and large.defaults()["steps"] == 28 and large.defaults()["cfg_scale"] == 3.5


@pytest.mark.parametrize(("index", "transformer", "says"), [
    ({"_class_name": "FluxKontextInpaintPipeline"}, {}, "Kontext inpainting"),
    ({"_class_name": "FluxFillPipeline"}, {}, "Fill"),
    ({}, {"in_channels": 384}, "384 input channels"),
    ({"_class_name": "FluxControlNetPipeline"}, {}, "ControlNet"),
])
def test_flux_edit_models_are_still_refused_by_name(flow_folders, tmp_path, index, transformer, says):
    folder = copy_folder(flow_folders["flux"], tmp_path / "m", index=index, transformer=transformer)
    with pytest.raises(UnsupportedModel, match=says) as e:
        folder_family(folder)
    assert e.value.help


def test_kontext_ships_devs_configs_and_is_told_by_its_pipeline_or_its_name(flow_folders, tmp_path):
    by_name = folder_family(copy_folder(flow_folders["flux"], tmp_path / "FLUX.1-Kontext-dev"))
    by_class = folder_family(copy_folder(flow_folders["flux"], tmp_path / "k",
                                         index={"_class_name": "FluxKontextPipeline"}))
    assert by_name.name == by_class.name == "flux-kontext" and by_class.guidance_embedded
    assert by_class.title == "Flux.1 Kontext [dev]" and by_class.defaults()["cfg_scale"] == 2.5


def test_the_tiny_transformers_weights_alone_tell_their_family(flow_folders, tmp_path):
    """diffusers' own layout, as a transformer saved alone: no model_index.json next to the file."""
    for name, family in (("sd3", "sd3"), ("flux", "flux-dev"), ("flux_schnell", "flux-schnell")):
        single = tmp_path / f"{name}.safetensors"
        shutil.copy(flow_folders[name] / "transformer" / "diffusion_pytorch_model.safetensors", single)
        fam = file_family(single)
        assert (fam.name, fam.guess) == (family, False), name
        assert "keys" in fam.why


def flux_bfl(dev: bool = True, channels: int = 64, prefix: str = "") -> dict[str, list[int]]:
    keys = {f"{prefix}img_in.weight": [3072, channels], f"{prefix}double_blocks.0.img_attn.qkv.weight": [9216, 3072],
            f"{prefix}single_blocks.0.linear1.weight": [21504, 3072]}
    if dev:
        keys[f"{prefix}guidance_in.in_layer.weight"] = [3072, 256]
    return keys


def sd3_sai(blocks: int, medium35: bool = False, qk_norm: bool = True) -> dict[str, list[int]]:
    keys = {"model.diffusion_model.x_embedder.proj.weight": [1536, 16, 2, 2]}
    for i in range(blocks):
        keys[f"model.diffusion_model.joint_blocks.{i}.x_block.attn.qkv.weight"] = [4608, 1536]
        if qk_norm:
            keys[f"model.diffusion_model.joint_blocks.{i}.x_block.attn.ln_q.weight"] = [64]
    if medium35:
        keys["model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight"] = [4608, 1536]
    return keys


def test_single_files_in_the_original_layouts(tmp_path):
    def fam(name, shapes, meta=None):
        return file_family(write_header(tmp_path / name, shapes, meta))

    assert fam("flux1-dev.safetensors", flux_bfl()).name == "flux-dev"
    assert fam("my_merge.safetensors", flux_bfl(dev=False)).name == "flux-schnell"  # keys, not the name
    comfy = fam("x.safetensors", flux_bfl(prefix="model.diffusion_model."))
    assert (comfy.name, comfy.base, comfy.guess) == ("flux-dev", "flux", False)
    with pytest.raises(UnsupportedModel, match="384 input channels"):
        fam("y.safetensors", flux_bfl(channels=384))
    assert fam("flux1-kontext-dev.safetensors", flux_bfl()).name == "flux-kontext"  # dev's keys: its name tells
    large = fam("a.safetensors", sd3_sai(38))
    assert (large.name, large.variant, large.title) == ("sd3", "3.5-large", "SD3.5 Large")
    medium = fam("b.safetensors", sd3_sai(24, medium35=True))
    assert medium.variant == "3.5-medium" and medium.defaults()["steps"] == 40
    sd3m = fam("c.safetensors", sd3_sai(24, qk_norm=False))
    assert sd3m.variant == "3-medium" and sd3m.defaults()["cfg_scale"] == 7.0
    turbo = fam("d.safetensors", sd3_sai(38), {"modelspec.title": "Stable Diffusion 3.5 Large Turbo"})
    assert (turbo.name, turbo.base, turbo.guess) == ("sd35-turbo", "sd3", False)
    assert fam("sd3.5_large_turbo.safetensors", sd3_sai(38)).name == "sd35-turbo"


def test_diffusers_layout_keys_and_sd_keys_do_not_mix():
    sd3 = {"transformer_blocks.0.attn.add_q_proj.weight": [64, 64], "pos_embed.proj.weight": [64, 16, 2, 2]}
    assert family_from_keys(sd3, "t.safetensors").name == "sd3"
    flux = {**sd3, "single_transformer_blocks.0.attn.to_q.weight": [64, 64], "x_embedder.weight": [64, 64],
            "time_text_embed.guidance_embedder.linear_1.weight": [64, 256]}
    assert family_from_keys(flux, "t.safetensors").name == "flux-dev"
    sd15 = {families.UNET_IN: [320, 4, 3, 3], families.UNET_X: [320, 768]}
    assert family_from_keys(sd15, "t.safetensors").name == "sd15"


@pytest.mark.parametrize(("repo", "name", "base", "variant"), [
    ("black-forest-labs/FLUX.1-dev", "flux-dev", "flux", ""),
    ("black-forest-labs/FLUX.1-schnell", "flux-schnell", "flux", ""),
    ("stabilityai/stable-diffusion-3.5-large", "sd3", "sd3", "3.5-large"),
    ("stabilityai/stable-diffusion-3.5-large-turbo", "sd35-turbo", "sd3", "3.5-large"),
    ("stabilityai/stable-diffusion-3.5-medium", "sd3", "sd3", "3.5-medium"),
    ("stabilityai/stable-diffusion-3-medium-diffusers", "sd3", "sd3", "3-medium"),
    ("someone/sd-3d-icons", "sd15", "sd15", ""),  # a 3D-style SD model, not SD3
])
def test_hub_ids_not_in_the_cache_are_guessed_from_their_names(tmp_path, monkeypatch, repo, name, base, variant):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    fam = source_family(repo)
    assert (fam.name, fam.base, fam.guess, fam.variant) == (name, base, True, variant)
    assert "guess" in fam.why and repo in fam.why


@pytest.mark.parametrize(("repo", "says"), [("black-forest-labs/FLUX.1-Fill-dev", "Fill"),
                                            ("black-forest-labs/FLUX.1-Canny-dev", "Canny")])
def test_flux_edit_hub_ids_are_refused_by_name(tmp_path, monkeypatch, repo, says):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UnsupportedModel, match=says):
        source_family(repo)
    assert source_family("black-forest-labs/FLUX.1-Kontext-dev").name == "flux-kontext"


def test_a_cached_flux_snapshot_is_read_not_guessed(flow_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    # a schnell folder cached under a name that says nothing: its transformer config tells
    shutil.copytree(flow_folders["flux_schnell"], tmp_path / "hub" / "models--someone--plain" / "snapshots" / "abc")
    fam = source_family("someone/plain")
    assert (fam.name, fam.guess) == ("flux-schnell", False) and "cached" in fam.why


def test_the_defaults_table_has_the_flow_families():
    assert {"sd3", "flux"} <= set(families.BASES) and set(families.FLOW_BASES) == {"sd3", "flux"}
    for name in ("sd3", "sd35-turbo", "flux-dev", "flux-schnell"):
        d = families.DEFAULTS[name]
        assert d["size"] == (1024, 1024) and d["sampler"] == "flow_euler" in cat.SAMPLERS
        assert name in families.FAMILIES and name in families.TITLES
    assert (families.DEFAULTS["flux-dev"]["steps"], families.DEFAULTS["flux-dev"]["cfg_scale"]) == (28, 3.5)
    assert (families.DEFAULTS["flux-schnell"]["steps"], families.DEFAULTS["flux-schnell"]["cfg_scale"]) == (4, 0.0)
    assert (families.DEFAULTS["sd3"]["steps"], families.DEFAULTS["sd3"]["cfg_scale"]) == (28, 3.5)
    assert (families.DEFAULTS["sd35-turbo"]["steps"], families.DEFAULTS["sd35-turbo"]["cfg_scale"]) == (4, 0.0)
    assert cat.FLOW_SAMPLERS == {"flow_euler"}


# ---- the compiler ----------------------------------------------------------------------------------------------------


def test_flux_dev_defaults_are_applied_and_listed(tmp_path, monkeypatch):
    r = compiled('model "black-forest-labs/FLUX.1-dev"\nframes 3\n', tmp_path, monkeypatch)
    assert r.ok, [d.message for d in r.errors]
    t = r.table
    assert (t.settings.width, t.settings.height, t.settings.sampler) == (1024, 1024, "flow_euler")
    assert set(t["steps"]) == {28} and set(t["cfg_scale"]) == {3.5}
    (n,) = codes(r, "DFM207")
    assert n.severity.value == "note" and (n.span.line, n.parameter) == (3, "model")
    assert all(w in n.message for w in ("Flux.1 [dev]", "size 1024x1024", "cfg_scale 3.5", "steps 28",
                                        "sampler flow_euler"))


def test_a_tiny_schnell_folder_gets_schnells_defaults(flow_folders, tmp_path, monkeypatch):
    r = compiled(f'model "{flow_folders["flux_schnell"]}"\nframes 4\nsize 512x512\n', tmp_path, monkeypatch)
    t = r.table
    assert r.ok and t.settings.sampler == "flow_euler" and set(t["cfg_scale"]) == {0.0}
    assert list(t["effective_steps"]) == [4, 1, 1, 1]  # Deforum's int(0.35 × 4) at strength 0.65
    (n,) = codes(r, "DFM207")
    assert "Flux.1 [schnell]" in n.message and "guess" not in n.message and "size" not in n.message
    sd3 = compiled('model "stabilityai/stable-diffusion-3.5-medium"\nframes 2\n', tmp_path, monkeypatch)
    assert set(sd3.table["steps"]) == {40} and set(sd3.table["cfg_scale"]) == {4.5}
    assert "SD3.5 Medium" in codes(sd3, "DFM207")[0].message


def test_a_flow_family_takes_only_the_flow_sampler(tmp_path, monkeypatch):
    r = compiled('model "black-forest-labs/FLUX.1-dev"\nframes 2\nsampler euler_a\n', tmp_path, monkeypatch)
    (e,) = codes(r, "DFM107")
    assert e.is_error and e.span.line == 5 and e.parameter == "sampler" and "flow_euler" in e.help
    assert "Flux.1 [dev]" in e.message and "euler_a" in e.message
    sd = compiled("frames 2\nsampler flow_euler\n", tmp_path, monkeypatch)
    (e,) = codes(sd, "DFM107")
    assert e.is_error and "Stable Diffusion 1.x" in e.message and "sampler euler_a" in e.help
    ok = compiled('model "stabilityai/stable-diffusion-3.5-large"\nframes 2\nsampler flow_euler\n', tmp_path,
                  monkeypatch)
    assert ok.ok and not codes(ok, "DFM107")


def test_a_flow_familys_size_is_a_multiple_of_16(tmp_path, monkeypatch):
    r = compiled('model "black-forest-labs/FLUX.1-schnell"\nframes 2\nsize 1000x576\n', tmp_path, monkeypatch,
                 check_only=True)
    (e,) = codes(r, "DFM104")
    assert e.is_error and e.span.line == 5 and e.parameter == "size" and "multiple of 16" in e.message
    assert "`size 992x576`" in e.help and "`size 1008x576`" in e.help
    assert nearest_sizes(1024) == (1024,) and nearest_sizes(520) == (512, 528)
    assert compiled("frames 2\nsize 520x512\n", tmp_path, monkeypatch).ok  # SD: a multiple of 8 is enough


def test_what_each_family_ignores_is_said(tmp_path, monkeypatch):
    body = "frames 2\nnegative \"blurry\"\ncfg_scale 0:(5)\nclip_skip 0:(2)\n"
    dev = compiled('model "black-forest-labs/FLUX.1-dev"\n' + body, tmp_path, monkeypatch,
                   prompt='prompt 0 "a (cat:1.3) on a mat --neg dog"')
    assert dev.ok  # warnings only
    warned = {(d.code, d.parameter, d.span.line) for d in dev.diagnostics if d.severity.value == "warning"}
    assert ("DFM304", "negative", 5) in warned and ("DFM304", "clip_skip", 7) in warned
    assert ("DFM502", "prompt", 2) in warned  # the weights, at the prompt that uses them
    neg = [d for d in codes(dev, "DFM304") if d.parameter == "negative"][0]
    assert "embedded" in neg.message and "Flux.1 [dev]" in neg.message
    assert any("--neg" in d.message for d in codes(dev, "DFM304") if d.parameter == "prompt")
    assert not any(d.parameter == "cfg_scale" for d in dev.diagnostics)  # dev's cfg_scale is its guidance
    schnell = compiled('model "black-forest-labs/FLUX.1-schnell"\n' + body, tmp_path, monkeypatch)
    assert any(d.parameter == "cfg_scale" and "cfg 0" in d.message for d in codes(schnell, "DFM304"))
    turbo = compiled('model "stabilityai/stable-diffusion-3.5-large-turbo"\n' + body, tmp_path, monkeypatch)
    assert {d.parameter for d in codes(turbo, "DFM304")} == {"cfg_scale", "negative", "clip_skip"}
    sd3 = compiled('model "stabilityai/stable-diffusion-3.5-large"\n' + body, tmp_path, monkeypatch)
    assert {d.parameter for d in codes(sd3, "DFM304")} == {"clip_skip"}  # SD3 runs CFG with the negative
    plain = compiled(body, tmp_path, monkeypatch, prompt='prompt 0 "a (cat:1.3)"')
    assert not codes(plain, "DFM304") and not codes(plain, "DFM502")  # SD honours all of it


def test_composable_prompts_check_clean_and_count_flux_passes_without_an_unconditional_one(tmp_path, monkeypatch):
    """Composable prompts render on flow models (tests/test_flow_render.py): no DFM405 any more, and the table's
    unet_evals counts what runs: Flux.1 [dev] embeds its guidance (one pass per part, none unconditional),
    SD3 adds the unconditional pass above cfg 1."""
    body = "frames 2\nsize 512x512\nsteps 4\nprompt 1 \"a\" weight 2 and \"b\"\n"
    dev = compiled('model "black-forest-labs/FLUX.1-dev"\n' + body, tmp_path, monkeypatch,
                   prompt='prompt 0 "a cat AND a dog"')
    assert not codes(dev, "DFM405") and dev.ok
    assert dev.table["unet_evals"].tolist() == [4 * 2, 1 * 2]  # frame 1 at strength 0.65 runs int(0.35 × 4)
    sd3 = compiled('model "stabilityai/stable-diffusion-3.5-large"\n' + body, tmp_path, monkeypatch,
                   prompt='prompt 0 "a cat AND a dog"')
    assert sd3.table["unet_evals"].tolist() == [4 * 3, 1 * 3]  # cfg 3.5: two parts and the unconditional pass
    plain = compiled('model "black-forest-labs/FLUX.1-dev"\n' + body.replace('"a" weight 2 and "b"', '"b"'),
                     tmp_path, monkeypatch, prompt='prompt 0 "a cat"')
    assert plain.table["unet_evals"].tolist() == [4, 1]  # was counted twice: cfg 3.5 is embedded, not CFG


def test_controlnet_units_are_refused_with_a_flow_family(tmp_path, monkeypatch):
    """Flux.1 runs its own ControlNets (tests/test_flow_controlnet.py); SD3 refuses units, saying why."""
    cn_folder = tmp_path / "flux-canny-controlnet"
    cn_folder.mkdir()
    (cn_folder / "config.json").write_text(json.dumps({"_class_name": "FluxControlNetModel", "in_channels": 64}))
    unit = f'frames 2\ncn_1_model "{cn_folder}"\ncn_1_loopback_mode true\n'
    r = compiled('model "black-forest-labs/FLUX.1-dev"\n' + unit, tmp_path, monkeypatch, check_only=True)
    assert not [e for e in codes(r, "DFM407") if e.is_error]
    r = compiled('model "stabilityai/stable-diffusion-3.5-large"\n' + unit, tmp_path, monkeypatch, check_only=True)
    errs = [e for e in codes(r, "DFM407") if e.is_error]
    assert len(errs) == 1 and errs[0].parameter == "cn_1_model" and errs[0].span.line == 5
    assert "SD3 ControlNet has no img2img pipeline in diffusers" in errs[0].message
    assert "Flux.1, SDXL or SD 1.x" in errs[0].help


def test_an_sd_controlnet_with_a_flow_family_is_refused_not_a_crash(tmp_path, monkeypatch):
    r = compiled('model "black-forest-labs/FLUX.1-dev"\nframes 2\ncn_1_model "lllyasviel/control_v11p_sd15_canny"\n'
                 "cn_1_loopback_mode true\n", tmp_path, monkeypatch, check_only=True)
    (e,) = [e for e in codes(r, "DFM407") if e.is_error]
    assert "SD 1.x ControlNet" in e.message and "Flux.1 [dev]" in e.message


def test_the_flux_example_checks_clean_and_is_canonical():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert format_source(text) == text
    r = compile_source(text, str(EXAMPLE), build_table=False)
    assert [d for d in r.diagnostics if d.severity.value != "note"] == []
    (n,) = codes(r, "DFM207")
    assert "Flux.1 [schnell]" in n.message and "sampler flow_euler" in n.message


def test_an_embedding_with_a_flow_family_is_a_check_error_at_its_statement(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    save_file({"emb_params": torch.zeros(2, 768)}, str(tmp_path / "style.safetensors"))
    r = compiled('model "black-forest-labs/FLUX.1-dev"\nframes 2\nembedding "style.safetensors"\n', tmp_path,
                 monkeypatch, check_only=True)
    (e,) = codes(r, "DFM405")
    assert e.is_error and e.parameter == "embedding" and e.span.line == 5 and "T5" in e.message
    sd = compiled('frames 2\nembedding "style.safetensors"\n', tmp_path, monkeypatch, check_only=True)
    assert not codes(sd, "DFM405") and sd.ok  # SD 1.x reads it


def test_true_cfg_scale_is_flux_s_and_its_pass_is_counted(tmp_path, monkeypatch):
    body = "frames 2\nsize 512x512\nsteps 4\ntrue_cfg_scale 0:(3)\n"
    dev = compiled('model "black-forest-labs/FLUX.1-dev"\n' + body + 'negative "blurry"\n', tmp_path, monkeypatch)
    assert dev.table["unet_evals"].tolist() == [4 * 2, 1 * 2]  # the negative's pass above true_cfg_scale 1
    assert not [d for d in codes(dev, "DFM304") if d.parameter in ("negative", "true_cfg_scale")]  # it is read
    alone = compiled('model "black-forest-labs/FLUX.1-dev"\n' + body, tmp_path, monkeypatch)
    assert alone.table["unet_evals"].tolist() == [4, 1]
    assert any("without a negative prompt" in d.message for d in codes(alone, "DFM304"))
    sd = compiled(body + 'negative "blurry"\n', tmp_path, monkeypatch)
    assert any(d.parameter == "true_cfg_scale" and "no effect" in d.message for d in codes(sd, "DFM304"))
