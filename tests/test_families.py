"""Model families told without torch: diffusers folders, .safetensors headers, hub ids (cache, then name)."""

import json
import shutil
import struct
from pathlib import Path

import pytest
from test_architecture import STDLIB, imports

from dfm.contract import families
from dfm.contract.errors import UserError
from dfm.contract.families import Family, UnsupportedModel, family_from_name, file_family, folder_family, source_family

CONFIGS = Path(__file__).resolve().parents[1] / "runtime" / "configs"  # the shipped config skeletons


def test_families_needs_only_the_standard_library():
    imps = imports(Path(families.__file__), "dfm.contract")
    assert {i for i in imps if i.startswith("dfm")} <= {"dfm.contract.errors", "dfm.contract.files"}
    assert {i.split(".")[0] for i in imps if not i.startswith("dfm")} <= STDLIB | {"re", "struct"}


@pytest.mark.parametrize(("skeleton", "name", "base"), [("sd15", "sd15", "sd15"), ("sd21", "sd21-v", "sd21"),
                                                        ("sdxl", "sdxl", "sdxl")])
def test_each_shipped_skeleton_is_its_family(skeleton, name, base):
    fam = folder_family(CONFIGS / skeleton)
    assert (fam.name, fam.base, fam.guess) == (name, base, False)


def copy_with(tmp_path: Path, skeleton: str, name: str = "model", **edits) -> Path:
    """A copy of a shipped skeleton with some JSON files changed: edits["unet"] = {key: value}…"""
    folder = tmp_path / name
    shutil.copytree(CONFIGS / skeleton, folder)
    files = {"unet": "unet/config.json", "scheduler": "scheduler/scheduler_config.json", "index": "model_index.json"}
    for part, change in edits.items():
        path = folder / files[part]
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    return folder


def test_turbo_lcm_and_epsilon_sd2_folders(tmp_path):
    trailing = {"_class_name": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing"}
    assert folder_family(copy_with(tmp_path, "sdxl", "a", scheduler=trailing)).name == "sdxl-turbo"
    sd_turbo = folder_family(copy_with(tmp_path, "sd21", "b", scheduler={**trailing, "prediction_type": "epsilon"}))
    assert (sd_turbo.name, sd_turbo.base) == ("sd-turbo", "sd21")
    lcm = folder_family(copy_with(tmp_path, "sd15", "c", unet={"time_cond_proj_dim": 256}))
    assert (lcm.name, lcm.base, lcm.guidance_embedded) == ("lcm", "sd15", True)
    assert lcm.defaults() == {"steps": 4, "sampler": "lcm"}
    lcm_xl = folder_family(copy_with(tmp_path, "sdxl", "d", scheduler={"_class_name": "LCMScheduler"}))
    assert (lcm_xl.name, lcm_xl.base, lcm_xl.guidance_embedded) == ("lcm", "sdxl", False)
    assert lcm_xl.defaults()["size"] == (1024, 1024)
    assert folder_family(copy_with(tmp_path, "sd21", "e", scheduler={"prediction_type": "epsilon"})).name == "sd21"
    # the name tells what the configs do not (SDXL-Lightning ships SDXL's own scheduler config)
    assert folder_family(copy_with(tmp_path, "sdxl", "SDXL-Lightning")).name == "sdxl-lightning"
    assert folder_family(copy_with(tmp_path, "sd15", "my-turbo-sd15")).name == "sd15"  # no SD 1.x turbo


@pytest.mark.parametrize(("edits", "says"), [
    # SD3 and Flux are families now (tests/test_flow_families.py); their edit and inpainting models are not
    ({"index": {"_class_name": "FluxKontextInpaintPipeline", "transformer": ["a", "b"]}}, "Kontext inpainting"),
    ({"index": {"_class_name": "StableDiffusion3InpaintPipeline"}}, "SD3 inpainting"),
    ({"index": {"_class_name": "SomethingNew", "transformer": ["a", "b"]}}, "transformer-based"),
    ({"unet": {"in_channels": 9}}, "9 input channels"),
])
def test_unsupported_folders_name_what_they_are(tmp_path, edits, says):
    with pytest.raises(UnsupportedModel, match=says) as e:
        folder_family(copy_with(tmp_path, "sd15", **edits))
    assert e.value.help


def test_an_sdxl_refiner_alone_is_refused(tmp_path):
    folder = copy_with(tmp_path, "sdxl")
    shutil.rmtree(folder / "text_encoder")
    with pytest.raises(UnsupportedModel, match="refiner"):
        folder_family(folder)


def write_header(path: Path, shapes: dict[str, list[int]], metadata: dict | None = None) -> Path:
    """A .safetensors file of a header only: families reads nothing past it."""
    table = {k: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}
    if metadata:
        table["__metadata__"] = metadata
    raw = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


SD_IN = {families.UNET_IN: [320, 4, 3, 3]}


def test_single_files_by_their_keys(tmp_path):
    def fam(name, shapes, meta=None):
        return file_family(write_header(tmp_path / name, shapes, meta))

    assert fam("a.safetensors", {**SD_IN, families.UNET_X: [320, 768]}).name == "sd15"
    v = fam("b.safetensors", {**SD_IN, families.UNET_X: [320, 1024]})
    assert (v.name, v.base, v.guess) == ("sd21-v", "sd21", True)  # an SD 2.x file does not say: a guess
    base = fam("v2-1_512-ema-pruned.safetensors", {families.UNET_X: [320, 1024]})
    assert (base.name, base.guess) == ("sd21", True)
    marked = fam("c.safetensors", {families.UNET_X: [320, 1024], "v_pred": []})
    assert (marked.name, marked.guess) == ("sd21-v", False)
    xl = {families.XL_CLIP_L + "text_model.x": [1], families.XL_OPEN_CLIP + "x": [1]}
    assert fam("d.safetensors", xl).name == "sdxl"
    assert fam("e.safetensors", xl, {"modelspec.title": "SDXL Turbo"}).name == "sdxl-turbo"
    assert fam("sd_xl_turbo_1.0.safetensors", xl).name == "sdxl-turbo"
    lcm = fam("f.safetensors", {**xl, "model.diffusion_model.time_embed.cond_proj.weight": [1280, 256]})
    assert (lcm.name, lcm.base) == ("lcm", "sdxl")
    with pytest.raises(UnsupportedModel, match="inpainting"):
        fam("g.safetensors", {families.UNET_IN: [320, 9, 3, 3], families.UNET_X: [320, 768]})
    with pytest.raises(UnsupportedModel, match="refiner"):
        fam("h.safetensors", {families.XL_REFINER + "x": [1], "conditioner.embedders.0.x": [1]})
    unknown = fam("dreamshaper_8.safetensors", {"something.else": [3]})
    assert (unknown.name, unknown.guess) == ("sd15", True)
    assert "no known family" in unknown.why


def test_a_file_with_its_config_folder_beside_it_follows_the_folder(tmp_path):
    folder = copy_with(tmp_path, "sdxl", scheduler={"timestep_spacing": "trailing"})
    assert file_family(write_header(folder / "x.safetensors", {})).name == "sdxl-turbo"


@pytest.mark.parametrize("raw", [b"", b"\x01\x02", struct.pack("<Q", 2**40) + b"{}", struct.pack("<Q", 4) + b"nope"])
def test_a_broken_header_is_a_clear_error_and_is_bounded(tmp_path, raw):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(raw)
    with pytest.raises(UserError, match="not a readable .safetensors") as e:
        file_family(path)
    assert e.value.help


@pytest.mark.parametrize(("repo", "name", "base"), [
    ("stabilityai/sdxl-turbo", "sdxl-turbo", "sdxl"),
    ("stabilityai/sd-turbo", "sd-turbo", "sd21"),
    ("SimianLuo/LCM_Dreamshaper_v7", "lcm", "sd15"),
    ("latent-consistency/lcm-sdxl", "lcm", "sdxl"),
    ("ByteDance/SDXL-Lightning", "sdxl-lightning", "sdxl"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl", "sdxl"),
    ("stabilityai/stable-diffusion-2-1", "sd21-v", "sd21"),
    ("stabilityai/stable-diffusion-2-1-base", "sd21", "sd21"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15", "sd15"),
    ("Lykon/dreamshaper-8", "sd15", "sd15"),
])
def test_hub_ids_not_in_the_cache_are_guessed_from_their_names(tmp_path, monkeypatch, repo, name, base):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    fam = source_family(repo)
    assert (fam.name, fam.base, fam.guess) == (name, base, True)
    assert "guess" in fam.why and repo in fam.why


def test_a_cached_hub_snapshot_is_read_not_guessed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--someone--plain-name"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(CONFIGS / "sdxl", repo / "snapshots" / "abc123")
    fam = source_family("someone/plain-name")
    assert (fam.name, fam.base, fam.guess) == ("sdxl", "sdxl", False)
    assert "cached" in fam.why
    # the snapshot folder's name is a commit hash: the hub id is what names a turbo model
    turbo = tmp_path / "hub" / "models--stabilityai--sdxl-turbo" / "snapshots" / "f00"
    shutil.copytree(CONFIGS / "sdxl", turbo)
    assert source_family("stabilityai/sdxl-turbo") == Family(
        "sdxl-turbo", "sdxl", source_family("stabilityai/sdxl-turbo").why)
    assert not source_family("stabilityai/sdxl-turbo").guess


def test_paths_resolve_against_the_scene_folder(tmp_path):
    copy_with(tmp_path, "sd21", "models", scheduler={"prediction_type": "epsilon"})
    assert source_family("models", tmp_path).name == "sd21"
    assert source_family("./missing/sdxl_turbo.safetensors", tmp_path).name == "sdxl-turbo"  # a guess


def test_the_defaults_table_covers_every_family_with_catalogue_names():
    from dfm.compiler import catalogue as cat

    assert set(families.DEFAULTS) == set(families.FAMILIES) == set(families.TITLES)
    for fam, defaults in families.DEFAULTS.items():
        for name, value in defaults.items():
            p = cat.BY_NAME[name]
            if name == "sampler":
                assert value in cat.SAMPLERS, fam
            elif name == "size":
                assert all(v % (16 if fam in ("sd3", "sd35-turbo", "flux-dev", "flux-schnell") else 8) == 0
                           for v in value)
            else:
                assert p.min <= value <= p.max, (fam, name)
    assert family_from_name("sdxl-turbo").defaults()["cfg_scale"] <= 1  # the unconditional pass is skipped


# ---- the compiler: the family's defaults where the scene sets none ---------------------------------------------


def compiled(body: str, tmp_path: Path, monkeypatch, *, check_only: bool = False, prompt: str = 'prompt 0 "a cat"'):
    """A scene of `prompt` and `body` compiled in `tmp_path`, with no Hugging Face cache to read."""
    from dfm.compiler.compile import compile_source

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))  # hub ids are guessed from their names
    return compile_source(f"dfm 1\n{prompt}\n{body}", str(tmp_path / "s.dfm"), base_dir=tmp_path,
                          build_table=not check_only)


def codes(result, code):
    return [d for d in result.diagnostics if d.code == code]


def test_a_turbo_scene_gets_the_turbo_defaults_and_a_note(tmp_path, monkeypatch):
    r = compiled('model "stabilityai/sdxl-turbo"\nframes 4\n', tmp_path, monkeypatch)
    t = r.table
    assert (t.settings.width, t.settings.height, t.settings.sampler) == (512, 512, "euler_a_trailing")
    assert set(t["steps"]) == {4} and set(t["cfg_scale"]) == {0.0}
    # Deforum's arithmetic at strength 0.65: frame 0 is txt2img (4 steps), then int(0.35 × 4) = 1 step each
    assert list(t["strength"]) == [0.65] * 4 and list(t["effective_steps"]) == [4, 1, 1, 1]
    (n,) = codes(r, "DFM207")
    assert n.severity.value == "note" and (n.span.line, n.parameter) == (3, "model")
    assert all(w in n.message for w in ("SDXL-Turbo", "size 512x512", "cfg_scale 0", "steps 4", "euler_a_trailing"))
    assert "guess" in n.message  # the hub id was not in the cache: told from its name, and said so


def test_what_the_scene_sets_wins_over_the_family(tmp_path, monkeypatch):
    r = compiled('model "stabilityai/sdxl-turbo"\nsize 768x512\nsteps 0:(8)\nsampler euler\nframes 2\n', tmp_path,
                 monkeypatch)
    t = r.table
    assert (t.settings.width, t.settings.sampler) == (768, "euler") and set(t["steps"]) == {8}
    assert set(t["cfg_scale"]) == {0.0}  # the one default the scene left out
    (n,) = codes(r, "DFM207")
    assert "cfg_scale 0" in n.message and "steps" not in n.message and "size" not in n.message


def test_sdxl_gets_1024_and_sd15_keeps_dfms_defaults(tmp_path, monkeypatch):
    shutil.copytree(CONFIGS / "sdxl", tmp_path / "xl")
    r = compiled('model "./xl"\nframes 2\n', tmp_path, monkeypatch)
    assert (r.table.settings.width, r.table.settings.height) == (1024, 1024)
    assert set(r.table["steps"]) == {25} and "size 1024x1024" in codes(r, "DFM207")[0].message
    plain = compiled("frames 2\n", tmp_path, monkeypatch)
    assert plain.table.settings.width == 512 and not codes(plain, "DFM207")


def test_an_unsupported_model_is_a_warning_at_check_time(tmp_path, monkeypatch):
    folder = copy_with(tmp_path, "sd15", "fill", index={"_class_name": "FluxFillPipeline"})
    r = compiled(f'model "{folder}"\nframes 2\n', tmp_path, monkeypatch)
    (w,) = codes(r, "DFM405")
    assert w.severity.value == "warning" and "Flux.1 Fill" in w.message and r.table is not None


def test_few_steps_never_run_zero_steps_silently(tmp_path, monkeypatch):
    r = compiled('model "stabilityai/sd-turbo"\nframes 6\nstrength 0:(0.65), 3:(0.8)\n', tmp_path, monkeypatch,
                 check_only=True)
    (w,) = codes(r, "DFM406")  # `dfm check` says it too
    assert w.frame == 3 and "int((1 - 0.8) × 4) = 0" in w.message and w.parameter == "strength"
    # 1 - 0.8 is 0.19999999999999996 in float64: 5 steps still run 0, so the fix says 6
    assert "to 6 for this strength" in w.help and "at or below 0.75 with 4 steps" in w.help
    full = compiled('model "stabilityai/sd-turbo"\nframes 3\nstrength 0:(1)\n', tmp_path, monkeypatch)
    assert not codes(full, "DFM406") and list(full.table["effective_steps"]) == [4, 0, 0]  # strength 1: kept
    cadence = compiled('model "stabilityai/sd-turbo"\nframes 4\ncadence 2\nstrength 0:(0.65), 1:(0.9), 2:(0.65)\n',
                       tmp_path, monkeypatch)
    assert not codes(cadence, "DFM406")  # frame 1 is a cadence tween: never diffused anyway
