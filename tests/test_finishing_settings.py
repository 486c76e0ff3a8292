"""The finishing settings (frame interpolation and upscaling of the finished video): checked, and Deforum's
frame_interpolation_* and r_upscale_* keys in and out."""

from __future__ import annotations

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.deforum_import import import_settings


def errors(text: str) -> list[str]:
    return [d.code for d in check_text('dfm 1\nframes 4\nprompt "a"\n' + text) if d.is_error]


def test_finishing_settings_are_checked():
    assert errors("interpolate flow\ninterpolate_times 3\n") == []
    assert errors("interpolate rife\n") == ["DFM410"]  # no weights file
    assert errors('interpolate film\ninterpolate_weights "film_net_fp16.pt"\n') == []
    assert errors("interpolate_upscaled true\n") == ["DFM410"]
    assert errors("interpolate flow\nsave_video off\n") == ["DFM410"]
    assert errors("interpolate_times 11\n") == ["DFM104"]
    t = compile_text('dfm 1\nframes 4\nprompt "a"\ninterpolate flow\ninterpolate_times 4\nupscale_scale 2\n')
    assert (t.settings.interpolate, t.settings.interpolate_times, t.settings.upscale_scale) == ("flow", 4, 2.0)


def test_a_finishing_edit_changes_the_video_only():
    from dfm.contract import changes

    old = compile_text('dfm 1\nframes 4\nprompt "a"\n')
    new = compile_text('dfm 1\nframes 4\nprompt "a"\ninterpolate flow\n')
    found = changes.compare(old, new)
    assert found.first_frame is None


def test_deforum_interpolation_keys_import_and_export():
    data = {"animation_mode": "2D", "max_frames": 4, "prompts": {"0": "a"},
            "frame_interpolation_engine": "RIFE v4.6", "frame_interpolation_x_amount": 3,
            "frame_interpolation_slow_mo_enabled": False, "frame_interpolation_slow_mo_amount": 2,
            "frame_interpolation_keep_imgs": False, "frame_interpolation_use_upscaled": False}
    imported = import_settings(data)
    # RIFE needs its weights file, which a Deforum file does not name: the line waits as a comment, said so
    assert "# interpolate rife" in imported.text
    assert any("flownet.pkl" in w for w in imported.warnings)
    text = imported.text.replace("# interpolate rife", "interpolate rife")
    r = compile_result(text + 'interpolate_weights "flownet.pkl"\n')
    assert r.ok, r.diagnostics
    assert (r.table.settings.interpolate, r.table.settings.interpolate_times) == ("rife", 3)
    out = export_settings(r).settings
    assert out["frame_interpolation_engine"] == "RIFE v4.6" and out["frame_interpolation_x_amount"] == 3
    # older files: "x2" and "Disabled"
    old = import_settings({**data, "frame_interpolation_x_amount": "x4"})
    assert "interpolate_times 4" in " ".join(old.text.split())
    off = import_settings({**data, "frame_interpolation_engine": "None", "frame_interpolation_x_amount": "Disabled"})
    assert compile_text(off.text).settings.interpolate == "none"


def test_deforums_upscaler_is_a_model_name_and_is_said_so():
    data = {"animation_mode": "2D", "max_frames": 4, "prompts": {"0": "a"}, "r_upscale_video": True,
            "r_upscale_factor": "x2", "r_upscale_model": "realesr-animevideov3", "r_upscale_keep_imgs": True}
    imported = import_settings(data)
    assert any("realesr-animevideov3" in w and "upscale_model" in w for w in imported.warnings)
    assert compile_text(imported.text).settings.upscale_scale == 2.0
    off = import_settings({**data, "r_upscale_video": False})
    assert not [w for w in off.warnings if "upscale" in w.lower()]
