"""Deforum's hybrid_* and optical_flow_* keys: imported without an "unsupported" warning, checked, and exported
back as Deforum's UI writes them."""

from __future__ import annotations

from pathlib import Path

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.deforum_import import import_settings
from dfm.contract import hybrid

CLIP = Path(__file__).resolve().parents[1] / "examples" / "input.mp4"

HYBRID_KEYS = {
    "hybrid_composite": "Normal", "hybrid_motion": "Optical Flow", "hybrid_motion_use_prev_img": True,
    "hybrid_flow_method": "DIS Medium", "hybrid_flow_consistency": True, "hybrid_consistency_blur": 3,
    "hybrid_comp_mask_type": "Blend", "hybrid_comp_mask_inverse": True, "hybrid_comp_mask_equalize": "Before",
    "hybrid_comp_mask_auto_contrast": True, "hybrid_use_first_frame_as_init_image": True,
    "hybrid_use_init_image": False, "optical_flow_cadence": "Farneback", "optical_flow_redo_generation": "None",
    "hybrid_comp_alpha_schedule": "0:(0.8)", "hybrid_comp_mask_blend_alpha_schedule": "0:(0.5)",
    "hybrid_comp_mask_contrast_schedule": "0:(1.2)", "hybrid_comp_mask_auto_contrast_cutoff_high_schedule": "0:(95)",
    "hybrid_comp_mask_auto_contrast_cutoff_low_schedule": "0:(5)", "hybrid_flow_factor_schedule": "0:(1), 4:(0.5)",
    "cadence_flow_factor_schedule": "0: (1)", "redo_flow_factor_schedule": "0: (1)",
}


def deforum_file(**extra) -> dict:
    return {"animation_mode": "2D", "max_frames": 8, "W": 64, "H": 64, "diffusion_cadence": "2",
            "video_init_path": str(CLIP), "extract_nth_frame": 1, "prompts": {"0": "a cat"},
            "hybrid_generate_inputframes": False, "hybrid_generate_human_masks": "None",
            "hybrid_comp_save_extra_frames": False, **HYBRID_KEYS, **extra}


def plain(text: object) -> object:
    return text.replace(" ", "") if isinstance(text, str) else text


def test_hybrid_keys_import_without_a_warning_and_export_back_unchanged():
    imported = import_settings(deforum_file())
    assert not [w for w in imported.warnings if any(k in w for k in HYBRID_KEYS)], imported.warnings
    assert set(HYBRID_KEYS) <= imported.mapped_keys
    r = compile_result(imported.text)
    assert r.ok, r.diagnostics
    s = r.table.settings
    assert (s.hybrid_composite, s.hybrid_motion, s.hybrid_flow_method) == ("normal", "optical_flow", "dis_medium")
    assert (s.hybrid_comp_mask_type, s.hybrid_comp_mask_equalize, s.optical_flow_cadence) == ("blend", "before",
                                                                                               "farneback")
    assert r.table["hybrid_flow_factor"].tolist() == [1, 0.875, 0.75, 0.625, 0.5, 0.5, 0.5, 0.5]
    out = export_settings(r).settings
    for key, value in HYBRID_KEYS.items():
        assert plain(out[key]) == plain(value), key  # Deforum's labels and the same schedules
    assert out["video_init_path"] == str(CLIP) and out["diffusion_cadence"] == "2"


def test_without_hybrid_the_table_has_no_hybrid_columns_and_exports_none():
    t = compile_text('dfm 1\nframes 3\nprompt "a"\n')
    assert not [c for c in t.columns if c in hybrid.SCHEDULES] and not hybrid.in_use(t.settings)
    out = export_settings(compile_result('dfm 1\nframes 3\nprompt "a"\n')).settings
    assert out["hybrid_composite"] == "None" and out["hybrid_motion"] == "None"
    assert out["optical_flow_cadence"] == "None"
    assert "hybrid_flow_factor_schedule" not in out  # no column, nothing to write


def test_an_early_files_bool_composite_and_what_dfm_has_not_are_read():
    imported = import_settings(deforum_file(hybrid_composite=True, hybrid_generate_human_masks="PNGs"))
    assert compile_text(imported.text).settings.hybrid_composite == "normal"
    assert any("human masks" in w and "IN USE" in w for w in imported.warnings)


def test_hybrid_checks():
    def codes(text: str) -> list[tuple[str, str]]:
        return [(d.code, d.severity.value) for d in check_text("dfm 1\nframes 8\nprompt \"a\"\n" + text)
                if d.code == "DFM409"]

    assert codes("hybrid_motion optical_flow\n") == [("DFM409", "error")]  # no video
    assert codes(f'hybrid_composite normal\nvideo_init_path "{CLIP}"\n') == []
    assert codes(f'video_init_path "{CLIP}"\n') == [("DFM409", "warning")]  # read by nothing in 2D
    assert codes("optical_flow_cadence dis_fine\n") == [("DFM409", "warning")]  # cadence 1: no tweens
    long = check_text(f'dfm 1\nframes 80\nprompt "a"\nhybrid_motion affine\nvideo_init_path "{CLIP}"\n')
    assert [d for d in long if d.code == "DFM409" and "60 frames" in d.message]


def test_raft_without_its_weights_is_a_check_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    diags = check_text(f'dfm 1\nframes 8\nprompt "a"\nhybrid_motion optical_flow\nhybrid_flow_method raft\n'
                       f'video_init_path "{CLIP}"\n')
    err = [d for d in diags if d.code == "DFM409" and d.is_error]
    assert err and hybrid.RAFT_WEIGHTS_FILE in err[0].message and str(tmp_path) in err[0].message
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / hybrid.RAFT_WEIGHTS_FILE).write_bytes(b"x")
    diags = check_text(f'dfm 1\nframes 8\nprompt "a"\nhybrid_motion optical_flow\nhybrid_flow_method raft\n'
                       f'video_init_path "{CLIP}"\n')
    assert not [d for d in diags if d.is_error]


def test_frame_0_from_the_first_video_frame_runs_the_init_images_steps():
    base = f'dfm 1\nframes 4\nprompt "a"\nsteps 20\nstrength 0.75\nvideo_init_path "{CLIP}"\nhybrid_motion affine\n'
    t = compile_text(base)
    assert t["effective_steps"].tolist() == [5, 5, 5, 5]  # int((1 - 0.75) × 20): img2img from video frame 0
    t = compile_text(base + "hybrid_use_first_frame_as_init_image false\n")
    assert t["effective_steps"].tolist()[0] == 20  # txt2img


def test_the_fingerprint_stamps_the_hybrid_video():
    from dfm.runtime.fingerprint import fingerprint

    def stamp(text: str) -> str:
        return fingerprint(compile_text(text), model_kind="hub", model_spec="x", model_path=None, model_folder=None,
                           model_sha256=None, depth=None, device_type="cpu", dtype="float32",
                           speedups="")["video_init_path"]

    assert str(CLIP) in stamp(f'dfm 1\nframes 4\nprompt "a"\nvideo_init_path "{CLIP}"\nhybrid_motion affine\n')
    assert stamp('dfm 1\nframes 4\nprompt "a"\n') == ""
