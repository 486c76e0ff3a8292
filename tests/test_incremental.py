"""Incremental re-render: a render of an edited scene into the folder of an earlier one keeps the frames the
edit cannot change, renders from the first one it can, and gives the bytes of a full render into an empty
folder (frames, depth maps, video). The rule itself (`dfm.contract.changes`) is checked on compiled tables, and
against real renders: the first frame the rule names is the first frame that differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from render_outputs import Boom, outputs, stop_at
from tiny_models import TINY_2D_SCENE, make_table, save_depth_models

from dfm.api import compile_result, compile_text
from dfm.app.cli import main
from dfm.compiler import catalogue as cat
from dfm.contract import changes
from dfm.contract.reads import UNKNOWN, Effect
from dfm.contract.table import FrameTable
from dfm.runtime import resume
from dfm.runtime.checks import SETTINGS_READ
from dfm.runtime.render import render

# 10 frames, cadence 2 (diffusions at 0, 2, 4, 6, 8), a prompt key at 5 (a tween) and a step key at 7
BASE = (TINY_2D_SCENE.replace("cadence 3", "cadence 2")
        .replace("translation_x 0:(1)\n", "translation_x 0:(1) step, 7:(1)\n"))
EDITS = {  # name -> (edited scene, the first frame that can differ: None for none)
    "prompt": (BASE.replace('prompt 5 "a dog"', 'prompt 5 "a bird"'), 6),  # read by the diffusion at 6
    "key": (BASE.replace("7:(1)", "7:(3)"), 7),  # motion is read on tweens too
    "seed": (BASE.replace("seed 5", "seed 6"), 0),
    "after the last frame": (BASE + 'prompt 12 "a bird"\n', None),
    "comment": (BASE.replace("fps 12\n", "fps 12   # twelve a second\n# a note\n"), None),
    "sampler": (BASE.replace("sampler euler", "sampler dpmpp_2m"), 0),
}


def differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(n for n in a.keys() | b.keys() if n != "video.mp4" and a.get(n) != b.get(n))


def steps_from(table, k: int) -> int:
    return int(table["effective_steps"][k:].sum())


def render_into(table, out: Path, tiny_models, **kw):
    return render(table, out, model=str(tiny_models["folder"]), device="cpu", **kw)


@pytest.fixture(scope="module")
def base(tiny_models, tmp_path_factory):
    """The base scene's full render, and its files."""
    table = compile_text(BASE, "scene.dfm")
    out = tmp_path_factory.mktemp("base")
    render_into(table, out, tiny_models)
    return table, out, outputs(out)


def copy_of(base, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(base[1], out)
    return out


# ---- the rule on tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EDITS))
def test_the_rule_names_the_first_frame_an_edit_can_change(base, name):
    text, first = EDITS[name]
    assert changes.compare(base[0], compile_text(text, "scene.dfm")).first_frame == first


def test_a_diffusion_only_value_on_a_tween_waits_for_the_next_diffusion():
    old = compile_text(BASE, "scene.dfm")
    new = compile_text(BASE.replace("strength 0.5", "strength 0:(0.5) step, 5:(0.25)"), "scene.dfm")
    found = changes.compare(old, new)
    assert found.first_frame == 6  # strength changes from 5; the renderer reads effective_steps, at 6
    assert "steps run" in found.first_change() and "at frame 6" in found.first_change()


def test_the_motion_of_frame_0_is_never_read():
    old = compile_text(BASE, "scene.dfm")
    new = compile_text(BASE.replace("angle 0:(2)", "angle 0:(5) step, 1:(2)"), "scene.dfm")
    found = changes.compare(old, new)
    assert [c.column for c in found.columns][:1] == ["angle"] and found.first_frame is None


def test_stills_frames_depend_on_their_own_rows_only():
    old = make_table(6, mode="none")
    new = old.with_columns(prompt=["a red cat"] * 3 + ["a blue dog"] + ["a red cat"] * 2)
    found = changes.compare(old, new)
    assert found.affected_frames.tolist() == [3]
    assert found.summary().startswith("frames 3 rendered, the other 5 kept")


def test_a_longer_or_shorter_scene_keeps_the_frames_it_shares(base):
    longer = compile_text(BASE.replace("frames 10", "frames 12"), "scene.dfm")
    assert changes.compare(base[0], longer).first_frame == 10
    shorter = compile_text(BASE.replace("frames 10", "frames 7"), "scene.dfm")
    assert changes.compare(base[0], shorter).first_frame == 6  # the last segment's blend weights change


def test_every_setting_the_runtime_reads_changes_frames_or_the_video():
    effects = cat.setting_effects()
    assert {n for n in SETTINGS_READ if effects.get(n) is Effect.NONE} == set()
    assert {n for n in SETTINGS_READ if effects.get(n) is Effect.VIDEO} == {
        "fps", "save_video", "video_crf", "audio", "audio_offset",
        # the finishing: more videos beside video.mp4, made from it
        "interpolate", "interpolate_times", "interpolate_slow_mo", "interpolate_weights", "interpolate_upscaled",
        "upscale_model", "upscale_scale"}
    table = make_table(3)
    assert table.setting_effects == effects  # the compiler hands the catalogue's rule over in the table
    assert table.effect_of("a setting no row names") is Effect.FRAMES  # unknown: every frame, to be safe


def test_every_column_of_a_compiled_table_is_known_to_the_rule():
    """A column no rule names counts as read on every row: safe, but it would make every change of it
    re-render from its first row. The compiler's columns all have a rule: derived ones in the contract,
    schedules in their catalogue row."""
    for mode in ("2d", "3d", "none", "interpolation", "video"):
        table = make_table(3, mode=mode)
        assert {n for n in table.names if table.read_of(n) is UNKNOWN} == set(), mode


def test_the_rule_survives_the_tables_json_form():
    """The record of a render keeps the table as JSON: read back, it says when each column is read."""
    table = make_table(4, mode="2d", perspective_flip=True)
    back = FrameTable.from_json(json.loads(table.dumps()))
    assert back.column_reads == table.column_reads and back.setting_effects == table.setting_effects
    reads = changes.RowReads(back)
    assert "angle" in reads.at(1) and "angle" not in reads.at(0) and "perspective_flip_fv" in reads.at(1)
    assert "near" not in reads.at(1) and "contrast" in reads.at(1)


# ---- renders ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edited_scene_rerenders_from_the_first_frame_it_changes(base, tiny_models, tmp_path, name):
    text, first = EDITS[name]
    table = compile_text(text, "scene.dfm")
    render_into(table, tmp_path / "ref", tiny_models)
    want = outputs(tmp_path / "ref")
    # the rule is exact: every frame before `first` is the same in a full render, frame `first` is not
    changed = differing(base[2], want)
    assert changed[:1] == ([f"frames/{first:05d}.png"] if first is not None else [])
    told = []
    report = render_into(table, copy_of(base, tmp_path), tiny_models, on_keep=told.append)
    start = 10 if first is None else first
    assert report.kept_frames == start and report.resumed_at == start
    assert report.unet_calls == steps_from(table, start)
    assert told == [report.kept]
    if first is None:
        assert report.kept.startswith("all 10 frames kept")
    elif first == 0:
        assert report.kept.startswith("all 10 frames rendered")
    else:
        assert report.kept.startswith(f"frames 0–{first - 1} kept: the first change is")
    if name == "sampler":
        assert report.kept == ("all 10 frames rendered: the first change is the sampler (euler → dpmpp_2m), which "
                               "every frame depends on")
    out = tmp_path / "out"
    assert outputs(out) == want
    assert not resume.state_path(out).exists() and resume.read_record(out).valid.all()


def test_the_cli_says_what_it_kept_and_why(base, tiny_models, tmp_path, capsys):
    out = copy_of(base, tmp_path)
    scene = tmp_path / "scene.dfm"
    scene.write_text(EDITS["prompt"][0], encoding="utf-8")
    argv = ["render", str(scene), "--out", str(out), "--model", str(tiny_models["folder"]), "--device", "cpu",
            "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "frames 0–5 kept: the first change is the prompt from frame 5, first read at frame 6" in err
    assert main([*argv, "--restart"]) == 0 and "kept" not in capsys.readouterr().err


def test_a_longer_scene_renders_only_the_new_frames(base, tiny_models, tmp_path):
    table = compile_text(BASE.replace("frames 10", "frames 12"), "scene.dfm")
    render_into(table, tmp_path / "ref", tiny_models)
    report = render_into(table, copy_of(base, tmp_path), tiny_models)
    assert report.kept_frames == 10 and report.unet_calls == steps_from(table, 10)
    assert outputs(tmp_path / "out") == outputs(tmp_path / "ref")


def test_an_interrupted_incremental_render_resumes_and_takes_another_edit(base, tiny_models, tmp_path):
    v2 = compile_text(EDITS["prompt"][0], "scene.dfm")  # renders from 6
    out = copy_of(base, tmp_path)
    with pytest.raises(Boom):
        render_into(v2, out, tiny_models, progress=stop_at(8))  # frames 6 and 7 rendered, then stopped
    report = render_into(v2, out, tiny_models)  # the same scene: resumed from its checkpoint
    assert report.resumed_at == 8 and report.unet_calls == steps_from(v2, 8)
    render_into(v2, tmp_path / "ref2", tiny_models)
    assert outputs(out) == outputs(tmp_path / "ref2")

    # interrupted again, and edited at frame 9 meanwhile: frames 0-7 (kept and rendered) stay, and the
    # state at 8 is replayed from the latents of diffusions 0-4 (the base's) and 6 (the interrupted run's)
    shutil.rmtree(out)
    out = copy_of(base, tmp_path)
    with pytest.raises(Boom):
        render_into(v2, out, tiny_models, progress=stop_at(8))
    v3 = compile_text(EDITS["prompt"][0].replace("7:(1)", "7:(1) step, 9:(4)"), "scene.dfm")
    report = render_into(v3, out, tiny_models)
    assert report.kept_frames == 8 and report.unet_calls == steps_from(v3, 8)
    assert report.kept == ("frames 0–7 kept: the render in this folder was stopped after frame 7; the first change "
                           "is translation_x at frame 9")
    render_into(v3, tmp_path / "ref3", tiny_models)
    assert outputs(out) == outputs(tmp_path / "ref3")


def test_missing_latents_restart_at_the_diffusion_that_needs_them(base, tiny_models, tmp_path):
    out = copy_of(base, tmp_path)
    resume.latents_path(out, 4).unlink()  # as after a render by a dfm that kept none
    table = compile_text(EDITS["key"][0], "scene.dfm")  # changes from 7
    report = render_into(table, out, tiny_models)
    assert report.kept_frames == 4 and "the latents of diffusion 4 were not kept" in report.kept
    render_into(table, tmp_path / "ref", tiny_models)
    assert outputs(out) == outputs(tmp_path / "ref")


def test_stills_render_only_the_images_whose_prompt_changed(tiny_models, tmp_path):
    old = make_table(6, mode="none", model=str(tiny_models["folder"]), seed=3)
    new = old.with_columns(prompt=["a red cat"] * 4 + ["a blue dog"] * 2)
    out = tmp_path / "out"
    render(old, out, device="cpu")
    render(new, tmp_path / "ref", device="cpu")
    report = render(new, out, device="cpu")
    assert report.kept_frames == 4 and report.unet_calls == 2 * 4
    assert outputs(out) == outputs(tmp_path / "ref")


def test_interpolation_keeps_the_frames_between_and_remakes_the_video(tiny_models, tmp_path):
    old = make_table(6, mode="interpolation", model=str(tiny_models["folder"]))
    new = old.with_columns(cfg_scale=np.where(np.arange(6) == 2, 5.0, old["cfg_scale"]))
    out = tmp_path / "out"
    render(old, out, device="cpu")
    render(new, tmp_path / "ref", device="cpu")
    report = render(new, out, device="cpu")
    assert report.kept_frames == 5 and report.resumed_at == 2
    assert outputs(out) == outputs(tmp_path / "ref")  # the video reads the kept frames around the new one


def test_3d_with_depth_maps_keeps_frames_and_replays_depth(tiny_models, tmp_path_factory, tmp_path):
    depth = save_depth_models(tmp_path_factory.mktemp("depth"))["dpt"]
    kw = dict(mode="3d", cadence=2, model=str(tiny_models["folder"]), depth_model=str(depth), save_depth_maps=True,
              strength=0.6, noise=0.02, translation_x=4.0, translation_z=8.0, steps=2)
    old = make_table(7, **kw)
    new = make_table(7, **{**kw, "translation_x": [4.0] * 5 + [1.0, 1.0]})
    assert changes.compare(old, new).first_frame == 5
    out = tmp_path / "out"
    render(old, out, device="cpu")
    render(new, tmp_path / "ref", device="cpu")
    report = render(new, out, device="cpu")
    assert report.kept_frames == 5 and report.depth_maps == 7
    assert outputs(out) == outputs(tmp_path / "ref")


def test_a_setup_change_renders_everything_and_says_so(base, tiny_models, tmp_path):
    out = copy_of(base, tmp_path)
    record = resume.read_record(out)
    record.fingerprint["version:torch"] = "0.0"  # as after an upgrade
    resume.write_record(out, record.table, record.fingerprint, record.valid)
    report = render_into(base[0], out, tiny_models)
    assert report.kept_frames == 0 and report.kept == "all 10 frames rendered: torch 0.0 → " + \
        resume.fingerprint(base[0], _sd(tiny_models))["version:torch"] + " changed"
    assert outputs(out) == base[2]


def _sd(tiny_models):
    from dfm.runtime.device import pick_device
    from dfm.runtime.models import StableDiffusion, resolve_source

    return StableDiffusion(resolve_source(str(tiny_models["folder"]), ()), pick_device("cpu"))


def test_an_unchanged_scene_keeps_its_video_and_loads_no_model(base, tiny_models, tmp_path, monkeypatch):
    from dfm.runtime import frame_loop

    out = copy_of(base, tmp_path)
    video = (out / "video.mp4").stat().st_mtime_ns
    monkeypatch.setattr(frame_loop, "load_models", lambda *a: pytest.fail("loaded the models"))
    table = compile_result(EDITS["comment"][0], "scene.dfm").table
    report = render_into(table, out, tiny_models)
    assert report.unet_calls == 0 and report.frames == 10 and report.video == out / "video.mp4"
    assert (out / "video.mp4").stat().st_mtime_ns == video
    assert outputs(out) == base[2]
