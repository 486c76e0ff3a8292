"""Issue 22's acceptance: a Deforum settings file with a ControlNet unit, imported, compiled and rendered with a
tiny random SD model and a tiny ControlNet made from its UNet, against the same file without the unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_controlnets import save_controlnet_forms

from dfm.api import compile_text
from dfm.compiler.deforum_import import import_settings
from dfm.runtime.render import render

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "input.mp4"  # 60 frames, 64x64


@pytest.fixture(scope="module")
def controlnet(tiny_models, tmp_path_factory):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_models["folder"], subfolder="unet")
    return save_controlnet_forms(tmp_path_factory.mktemp("cn"), unet, seed=7)["folder"]


def deforum_file(controlnet: Path, *, enabled: bool, weight: str) -> dict:
    return {
        "animation_mode": "2D", "max_frames": 3, "W": 64, "H": 64, "seed": 42, "seed_behavior": "fixed",
        "sampler": "euler", "steps": 3, "strength_schedule": "0:(0.4)", "cfg_scale_schedule": "0:(5)",
        "zoom": "0:(1.02)", "noise_schedule": "0:(0)", "color_coherence": "None",
        "prompts": {"0": "a red cat"},
        "cn_1_enabled": enabled, "cn_1_module": "none", "cn_1_model": str(controlnet), "cn_1_vid_path": str(CLIP),
        "cn_1_weight": weight, "cn_1_guidance_start": "0:(0.0)", "cn_1_guidance_end": "0:(1.0)",
        "cn_1_processor_res": 64, "cn_1_threshold_a": 64, "cn_1_threshold_b": 64,
        "cn_1_resize_mode": "Inner Fit (Scale to Fit)", "cn_1_control_mode": "Balanced", "cn_1_loopback_mode": False,
        "cn_1_pixel_perfect": False, "cn_1_low_vram": False, "cn_1_overwrite_frames": True, "cn_1_mask_vid_path": "",
    }


def rendered(data: dict, model: Path, out: Path) -> list[bytes]:
    imported = import_settings(data)
    table = compile_text(imported.text)
    render(table, out, model=str(model), device="cpu")
    return [(out / "frames" / f"{i:05d}.png").read_bytes() for i in range(len(table))]


def test_weight_0_renders_exactly_as_without_controlnet_and_weight_1_differs(tiny_models, controlnet, tmp_path):
    model = tiny_models["folder"]
    plain = rendered(deforum_file(controlnet, enabled=False, weight="0:(1)"), model, tmp_path / "plain")
    zero = rendered(deforum_file(controlnet, enabled=True, weight="0:(0)"), model, tmp_path / "zero")
    one = rendered(deforum_file(controlnet, enabled=True, weight="0:(1)"), model, tmp_path / "one")
    assert zero == plain
    assert all(a != b for a, b in zip(one, plain, strict=True))
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["controlnet"][0]["source"] == str(CLIP)
    assert "controlnet" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())


def test_a_weight_schedule_switches_the_unit_off_where_it_reaches_0(tiny_models, controlnet, tmp_path):
    model = tiny_models["folder"]
    data = deforum_file(controlnet, enabled=True, weight="0:(1), 1:(1), 2:(0)")
    assert compile_text(import_settings(data).text)["cn_1_weight"].tolist() == [1.0, 1.0, 0.0]
    data["cn_1_low_vram"] = True
    data["cn_1_guidance_end"] = "0:(0.5)"
    saved = tmp_path / "saved"
    imported = import_settings(data)
    table = compile_text(imported.text + "save_control_frames true\n")
    render(table, saved, model=str(model), device="cpu")
    # the control images are saved beside the frames, one per diffused frame the unit acts on
    assert sorted(p.name for p in (saved / "controlnet_1").iterdir()) == ["00000.png", "00001.png"]


@pytest.mark.parametrize("mode", ["video", "2d-cadence"])
def test_a_unit_acts_in_video_mode_and_with_cadence(tiny_models, controlnet, tmp_path, mode):
    model = tiny_models["folder"]
    data = deforum_file(controlnet, enabled=True, weight="0:(1)")
    if mode == "video":
        data.update(animation_mode="Video Input", video_init_path=str(CLIP), extract_nth_frame=2)
    else:
        data.update(diffusion_cadence=2, max_frames=4)
    off = dict(data, cn_1_enabled=False)
    with_unit = rendered(data, model, tmp_path / "unit")
    without = rendered(off, model, tmp_path / "plain")
    table = compile_text(import_settings(data).text)
    diffused = [i for i in range(len(table)) if table["diffused"][i]]
    assert diffused and all(with_unit[i] != without[i] for i in diffused)


def test_a_sharded_render_saves_the_control_images_a_local_render_saves(tiny_models, controlnet, tmp_path):
    """With save_control_frames, the Ray workers (their code run here by LocalPool) return each unit's control
    images with the frames, and the driver writes them where a local render does."""
    from dfm.scaleout.cluster import LocalPool
    from dfm.scaleout.shard import render_sharded

    data = dict(deforum_file(controlnet, enabled=True, weight="0:(1)"), animation_mode="Video Input",
                video_init_path=str(CLIP), extract_nth_frame=3, max_frames=4)
    table = compile_text(import_settings(data).text + "save_control_frames true\n")
    render(table, tmp_path / "local", model=str(tiny_models["folder"]), device="cpu")
    with LocalPool("cpu") as pool:
        render_sharded(table.with_settings(model=str(tiny_models["folder"])), tmp_path / "sharded", pool, chunk=1)

    def saved(out: Path) -> dict[str, bytes]:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("controlnet_1/*.png"))}

    local = saved(tmp_path / "local")
    assert len(local) == len(table) and saved(tmp_path / "sharded") == local


def test_a_users_folder_of_a_control_folders_name_is_never_written_into(tiny_models, controlnet, tmp_path):
    """save_control_frames writes controlnet_N/ only where it is dfm's: a user's folder of that name in the
    render folder stops the render before anything changes; dfm's own is rewritten by the next render."""
    from render_outputs import snapshot

    from dfm.runtime import RenderError

    data = deforum_file(controlnet, enabled=True, weight="0:(1)")
    plain = compile_text(import_settings(dict(data, cn_1_enabled=False)).text)
    out = tmp_path / "out"
    render(plain, out, model=str(tiny_models["folder"]), device="cpu")
    (out / "controlnet_1").mkdir()
    (out / "controlnet_1" / "00000.png").write_bytes(b"the user's own image")
    before = snapshot(out)
    saving = compile_text(import_settings(data).text + "save_control_frames true\n")
    try:
        render(saving, out, model=str(tiny_models["folder"]), device="cpu")
    except RenderError as e:
        assert "controlnet_1 was not written by dfm" in str(e) and "save_control_frames" in str(e)
    else:
        raise AssertionError("the user's controlnet_1/ would have been written into")
    assert snapshot(out) == before
    (out / "controlnet_1" / "00000.png").unlink()
    (out / "controlnet_1").rmdir()
    render(saving, out, model=str(tiny_models["folder"]), device="cpu")
    assert json.loads((out / "manifest.json").read_text())["control_frames"] == ["controlnet_1"]
    again = saving.with_columns(zoom=[1.02, 1.03, 1.04])
    render(again, out, model=str(tiny_models["folder"]), device="cpu")  # dfm's own folder: rewritten
    assert sorted(p.name for p in (out / "controlnet_1").iterdir()) == ["00000.png", "00001.png", "00002.png"]
