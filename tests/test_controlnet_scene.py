"""ControlNet units in the language, the checker, the table and Deforum's files (no model is loaded: a unit's
family is read from its config.json or its .safetensors header)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.deforum_import import import_settings
from dfm.contract import controlnet as cn


def controlnet_folder(root: Path, name: str = "cn", cross_attention: int = 768, **extra) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "ControlNetModel", "cross_attention_dim": cross_attention, **extra}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def safetensors_file(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A .safetensors file whose header lists `shapes` (float16 tensors of zeros)."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        size = int(np.prod(shape)) * 2
        header[key] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    controlnet_folder(tmp_path)
    (tmp_path / "pose.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # exists: only the path is checked here
    return tmp_path


def compiled(scene_dir: Path, body: str):
    return compile_result("dfm 1\nframes 8\nprompt \"a cat\"\n" + body, base_dir=scene_dir)


def codes(result, severity: str | None = None) -> list[str]:
    return [d.code for d in result.diagnostics if severity is None or d.severity.value == severity]


def test_a_unit_with_a_model_is_in_the_table_with_its_schedules(scene_dir: Path):
    r = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\ncn_1_weight 0:(1), 5:(1), 6:(0)\n'
                            "cn_1_control_mode \"My prompt is more important\"\ncn_1_resize_mode \"Just Resize\"\n")
    assert r.ok, r.diagnostics
    t = r.table
    assert t.settings[cn.UNITS_SETTING] == (1,)
    assert list(t["cn_1_weight"]) == [1, 1, 1, 1, 1, 1, 0, 0]
    assert list(t["cn_1_guidance_start"]) == [0.0] * 8 and list(t["cn_1_guidance_end"]) == [1.0] * 8
    unit = cn.active_units(t.settings)[0]
    assert unit.model == str(scene_dir / "cn") and unit.source == str(scene_dir / "pose.png")
    assert (unit.module, unit.control_mode, unit.resize_mode) == ("none", "prompt", "just_resize")
    # the unit's columns are read on diffused rows only
    assert t.read_of("cn_1_weight").when.name == "DIFFUSED"
    assert "cn_2_weight" not in t.columns and "cn_2_model" not in t.settings


def test_a_scene_without_units_has_no_unit_rows_and_the_same_table_as_before():
    t = compile_text('dfm 1\nframes 4\nprompt "a cat"\n')
    assert not [k for k in t.columns if k.startswith("cn_")]
    assert not [k for k in t.settings if k.startswith("cn_")] and cn.UNITS_SETTING not in t.settings
    assert cn.active_units(t.settings) == ()


def test_statements_of_a_unit_without_a_model_warn_and_change_nothing(scene_dir: Path):
    r = compiled(scene_dir, "cn_2_weight 0.5\n")
    assert r.ok and "DFM407" in codes(r, "warning")
    assert "cn_2_weight" not in r.table.columns
    r = compiled(scene_dir, "cn_2_enabled true\n")
    assert "DFM407" in codes(r, "error")


def test_enabled_false_switches_a_unit_off_and_keeps_its_statements(scene_dir: Path):
    r = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\ncn_1_enabled false\n')
    assert r.ok and cn.UNITS_SETTING not in r.table.settings and codes(r) == []


def test_a_unit_needs_a_source_or_loopback(scene_dir: Path):
    r = compiled(scene_dir, 'cn_1_model "cn"\n')
    err = [d for d in r.errors if d.code == "DFM407"]
    assert err and "no control source" in err[0].message and "cn_1_loopback_mode true" in err[0].help
    r = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_loopback_mode true\n')
    assert r.ok and cn.active_units(r.table.settings)[0].loopback


def test_a_controlnet_of_another_family_is_a_check_error(scene_dir: Path):
    controlnet_folder(scene_dir, "xl", 2048, addition_embed_type="text_time")
    r = compiled(scene_dir, 'cn_1_model "xl"\ncn_1_vid_path "pose.png"\n')
    err = [d for d in r.errors if d.code == "DFM407"]
    assert err and "SDXL ControlNet" in err[0].message and "Stable Diffusion 1.x" in err[0].message
    # the same unit on an SDXL scene is fine (the scene's family read from its folder's configs too)
    sdxl = scene_dir / "sdxl_model"
    (sdxl / "unet").mkdir(parents=True)
    (sdxl / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    (sdxl / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 2048,
                                                            "addition_embed_type": "text_time"}))
    r = compiled(scene_dir, 'model "./sdxl_model"\ncn_1_model "xl"\ncn_1_vid_path "pose.png"\n')
    assert not [d for d in r.errors if d.code == "DFM407"], r.diagnostics


def test_a_single_file_controlnet_is_told_by_its_header(scene_dir: Path):
    safetensors_file(scene_dir / "xl.safetensors",
                     {"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": [640, 2048]})
    safetensors_file(scene_dir / "sd15.safetensors",
                     {"input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768]})
    r = compiled(scene_dir, 'cn_1_model "xl.safetensors"\ncn_1_vid_path "pose.png"\n')
    assert "DFM407" in codes(r, "error")
    r = compiled(scene_dir, 'cn_1_model "sd15.safetensors"\ncn_1_vid_path "pose.png"\n')
    assert r.ok, r.diagnostics


def test_an_a1111_name_is_found_by_its_stem_in_controlnet_dir(scene_dir: Path):
    models = scene_dir / "models" / "ControlNet" / "v11"
    models.mkdir(parents=True)
    safetensors_file(models / "control_v11p_sd15_canny.safetensors",
                     {"input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768]})
    body = 'cn_1_model "control_v11p_sd15_canny [d14c016b]"\ncn_1_vid_path "pose.png"\n'
    r = compiled(scene_dir, body)
    err = [d for d in r.errors if d.code == "DFM407"]
    assert err and "controlnet_dir" in err[0].help
    r = compiled(scene_dir, 'controlnet_dir "models/ControlNet"\n' + body)
    assert r.ok, r.diagnostics
    assert r.table.settings.cn_1_model == str(models / "control_v11p_sd15_canny.safetensors")
    r = compiled(scene_dir, 'controlnet_dir "models/ControlNet"\ncn_1_model "control_v11p_sd15_cany"\n'
                            'cn_1_vid_path "pose.png"\n')
    err = [d for d in r.errors if d.code == "DFM407"]
    assert err and "did you mean `control_v11p_sd15_canny`" in err[0].message


def test_a_preprocessor_whose_weights_are_missing_names_the_files(scene_dir: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(scene_dir / "empty_cache"))
    body = 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\ncn_1_module softedge_hed\n'
    r = compiled(scene_dir, body)
    err = [d for d in r.errors if d.code == "DFM407"]
    assert err and "ControlNetHED.pth" in err[0].message and "huggingface-cli download" in err[0].help
    (scene_dir / "annotators").mkdir()
    (scene_dir / "annotators" / "ControlNetHED.pth").write_bytes(b"x")
    r = compiled(scene_dir, 'annotator_dir "annotators"\n' + body)
    assert r.ok, r.diagnostics
    # an A1111 module name is read as dfm's; weight-free preprocessors need nothing
    r = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\ncn_1_module depth_midas\n')
    assert r.ok and r.table.settings.cn_1_module == "depth"


def test_a_window_that_never_opens_warns_at_its_frame(scene_dir: Path):
    r = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\ncn_1_guidance_start 0:(0), 3:(0.9)\n'
                            "cn_1_guidance_end 0.5\n")
    warn = [d for d in r.diagnostics if d.code == "DFM407"]
    assert r.ok and warn and warn[0].frame == 2 and "never acts" in warn[0].message


def test_ranges_are_checked_per_frame(scene_dir: Path):
    r = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\ncn_1_guidance_end 0:(1), 4:(1.5)\n')
    assert "DFM401" in codes(r, "error")


# ---- Deforum's cn_N_* keys -------------------------------------------------------------------------------


def deforum_file(scene_dir: Path, **unit) -> dict:
    data = {"animation_mode": "2D", "max_frames": 8, "W": 64, "H": 64, "prompts": {"0": "a cat"}}
    for n in range(1, 6):
        data.update({f"cn_{n}_enabled": False, f"cn_{n}_model": "None", f"cn_{n}_module": "none",
                     f"cn_{n}_weight": "0:(1)", f"cn_{n}_guidance_start": "0:(0.0)",
                     f"cn_{n}_guidance_end": "0:(1.0)", f"cn_{n}_vid_path": "", f"cn_{n}_mask_vid_path": "",
                     f"cn_{n}_processor_res": 64, f"cn_{n}_threshold_a": 64, f"cn_{n}_threshold_b": 64,
                     f"cn_{n}_resize_mode": "Inner Fit (Scale to Fit)", f"cn_{n}_control_mode": "Balanced",
                     f"cn_{n}_pixel_perfect": False, f"cn_{n}_loopback_mode": False, f"cn_{n}_low_vram": False,
                     f"cn_{n}_overwrite_frames": True})
    data.update({f"cn_1_{k}": v for k, v in unit.items()})
    return data


def test_an_enabled_deforum_unit_imports_compiles_and_exports_back(scene_dir: Path):
    data = deforum_file(scene_dir, enabled=True, model=str(scene_dir / "cn"), vid_path=str(scene_dir / "pose.png"),
                        weight="0:(1), 5:(1), 6:(0)", control_mode="ControlNet is more important",
                        resize_mode="Outer Fit (Shrink to Fit)", module="canny", threshold_a=100, threshold_b=200)
    imported = import_settings(data)
    assert not [w for w in imported.warnings if "ControlNet" in w or "cn_" in w], imported.warnings
    assert {f"cn_{n}_{f}" for n in range(1, 6) for f in ("enabled", "weight", "low_vram")} <= imported.mapped_keys
    assert "cn_1_weight" in imported.text and "cn_2_" not in imported.text
    r = compile_result(imported.text, base_dir=scene_dir)
    assert r.ok, r.diagnostics
    assert list(r.table["cn_1_weight"]) == [1, 1, 1, 1, 1, 1, 0, 0]
    unit = cn.active_units(r.table.settings)[0]
    assert (unit.module, unit.control_mode, unit.resize_mode) == ("canny", "control", "resize_and_fill")
    assert (unit.threshold_a, unit.threshold_b) == (100, 200)
    out = export_settings(r).settings
    assert out["cn_1_weight"] == "0:(1), 5:(1), 6:(0)"  # the unit's schedules round-trip byte for byte
    assert out["cn_1_enabled"] is True and out["cn_1_model"] == str(scene_dir / "cn")
    assert out["cn_1_control_mode"] == "ControlNet is more important"
    assert out["cn_1_resize_mode"] == "Outer Fit (Shrink to Fit)" and out["cn_1_module"] == "canny"
    assert out["cn_2_enabled"] is False and out["cn_2_model"] == "None" and out["cn_2_weight"] == "0:(1)"
    assert {k for k in data if k.startswith("cn_")} == {k for k in out if k.startswith("cn_")}
    # and the export imports again to the same unit
    again = import_settings(out)
    assert compile_result(again.text, base_dir=scene_dir).table.settings.cn_1_control_mode == "control"


def test_deforum_units_deforum_would_not_run_are_left_out_with_a_reason(scene_dir: Path):
    imported = import_settings(deforum_file(scene_dir, enabled=True, model="None"))
    assert any("left out ControlNet unit 1" in w and "no model" in w for w in imported.warnings)
    imported = import_settings(deforum_file(scene_dir, enabled=True, model=str(scene_dir / "cn")))
    assert any("no input video" in w for w in imported.warnings) and "cn_1" not in imported.text
    # set up, then switched off: one line, nothing lost
    imported = import_settings(deforum_file(scene_dir, enabled=False, model=str(scene_dir / "cn")))
    assert any("set up but switched off" in w for w in imported.warnings) and "cn_1" not in imported.text
    # untouched units: not a word
    imported = import_settings(deforum_file(scene_dir))
    assert not [w for w in imported.warnings if "ControlNet" in w]


def test_loopback_and_low_vram_import(scene_dir: Path):
    imported = import_settings(deforum_file(scene_dir, enabled=True, model=str(scene_dir / "cn"), loopback_mode=True,
                                            low_vram=True, vid_path="/somewhere/else.mp4"))
    assert any("low_vram" in w for w in imported.warnings)
    r = compile_result(imported.text, base_dir=scene_dir)
    assert r.ok, r.diagnostics
    unit = cn.active_units(r.table.settings)[0]
    assert unit.loopback and unit.source is None  # Deforum reads no video in loopback mode


def test_check_explains_deforums_own_unit_keys():
    d = [d for d in check_text('dfm 1\nprompt "a"\ncn_1_low_vram true\n') if d.code == "DFM101"]
    assert d and "Deforum key" in d[0].message and "memory" in d[0].help


def test_a_parseq_manifest_drives_a_units_schedules(scene_dir: Path):
    from dfm.compiler.parseq import from_parseq_manifest

    rows = [{"frame": i, "deforum_prompt": "a cat", "cn_1_weight": 1.0 if i < 6 else 0.0,
             "cn_1_guidance_end": 0.5 + i / 20} for i in range(8)]
    imported = from_parseq_manifest({"meta": {"generated_by": "sd_parseq", "version": "0.1.100"},
                                     "options": {"output_fps": 15}, "rendered_frames": rows})
    text = imported.text + f'cn_1_model "{scene_dir / "cn"}"\ncn_1_vid_path "{scene_dir / "pose.png"}"\n'
    r = compile_result(text, base_dir=scene_dir)
    assert r.ok, r.diagnostics
    assert list(r.table["cn_1_weight"]) == [1, 1, 1, 1, 1, 1, 0, 0]
    np.testing.assert_allclose(r.table["cn_1_guidance_end"], [0.5 + i / 20 for i in range(8)])


def test_the_render_fingerprint_stamps_a_units_files(scene_dir: Path):
    from dfm.runtime.fingerprint import controlnet_files

    assert controlnet_files(compile_text('dfm 1\nframes 2\nprompt "a"\n')) == {}
    (scene_dir / "cn" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 10)
    table = compiled(scene_dir, 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\n').table
    before = controlnet_files(table)
    assert str(scene_dir / "pose.png") in before["controlnet_files"]
    (scene_dir / "pose.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"1" * 20)  # the source replaced in place
    assert controlnet_files(table) != before
    before = controlnet_files(table)
    (scene_dir / "cn" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 11)  # new weights
    assert controlnet_files(table) != before


def test_a_weight_edit_from_frame_5_changes_frames_from_5_only(scene_dir: Path):
    from dfm.contract import changes

    body = 'cn_1_model "cn"\ncn_1_vid_path "pose.png"\nstrength 0\n'
    old = compiled(scene_dir, body + "cn_1_weight 1\n").table
    new = compiled(scene_dir, body + "cn_1_weight 0:(1), 4:(1), 5:(0.5)\n").table
    assert changes.compare(old, new).first_frame == 5
    # a unit's setting changes every frame; a unit turned on changes them all too
    assert changes.compare(old, compiled(scene_dir, body + "cn_1_control_mode prompt\n").table).first_frame == 0
    plain = compile_result('dfm 1\nframes 8\nprompt "a cat"\nstrength 0\n', base_dir=scene_dir).table
    assert changes.compare(plain, old).first_frame == 0
