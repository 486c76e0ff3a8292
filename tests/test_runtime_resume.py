"""Exact resume: a render stopped at any frame and run again gives the bytes of an uninterrupted render
(frames, depth maps, video); a checkpoint of another scene, a damaged one or `restart` starts over."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from render_outputs import Boom, outputs, stop_at
from tiny_models import TINY_2D_SCENE, make_table, save_depth_models

from dfm.api import compile_text
from dfm.app.cli import main
from dfm.runtime import resume
from dfm.runtime.render import RenderInterrupted, render

SCENE = TINY_2D_SCENE + "noise 0:(0.05)\n"


def assert_same(got: Path, want: dict[str, bytes]) -> None:
    files = outputs(got)
    assert sorted(files) == sorted(want)
    assert [name for name in want if files[name] != want[name]] == []
    # success removes the checkpoint; the record of the frames and the latents stay (incremental re-render)
    assert not resume.state_path(got).exists() and not resume.owner_path(got).exists()
    assert not [p for p in got.rglob(".*") if p.is_file()]  # no temporary file left anywhere


def steps_from(table, k: int) -> int:
    return int(table["effective_steps"][k:].sum())


@pytest.fixture(scope="module")
def scene2d(tiny_models, tmp_path_factory):
    """The 2D scene (cadence 3, LAB colour coherence, noise) and its uninterrupted render."""
    table = compile_text(SCENE, "scene.dfm")
    out = tmp_path_factory.mktemp("ref2d")
    render(table, out, model=str(tiny_models["folder"]), device="cpu")
    return table, outputs(out)


def render2d(table, out, tiny_models, **kw):
    return render(table, out, model=str(tiny_models["folder"]), device="cpu", **kw)


@pytest.mark.parametrize("k", [1, 4, 5, 8])  # after diffusion 0, after diffusion 3, mid-segment twice
def test_2d_cadence_render_resumes_to_identical_bytes(scene2d, tiny_models, tmp_path, k):
    table, want = scene2d
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(k))
    assert (tmp_path / resume.STATE_DIR / resume.STATE_FILE).is_file()
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:05d}.png" for i in range(k)]
    assert not (tmp_path / "video.mp4").exists()  # an unfinished stream is dropped, not left half-written
    seen = []
    report = render2d(table, tmp_path, tiny_models, on_resume=lambda f, n: seen.append((f, n)))
    assert seen == [(k, 10)] and report.resumed_at == k and report.frames == 10
    assert report.unet_calls == steps_from(table, k)  # frames before the checkpoint are not rendered again
    assert_same(tmp_path, want)


def test_ctrl_c_flushes_and_says_where_the_next_run_starts(scene2d, tiny_models, tmp_path):
    table, want = scene2d
    with pytest.raises(RenderInterrupted) as e:
        render2d(table, tmp_path, tiny_models, progress=stop_at(5, KeyboardInterrupt))
    assert isinstance(e.value, KeyboardInterrupt) and (e.value.next_frame, e.value.total) == (5, 10)
    data = torch.load(resume.state_path(tmp_path), weights_only=True)  # plain tensors and numbers only
    assert data["next_frame"] == 5 and data["at"] == 4 and sorted(data["buffers"]) == [0, 3]  # mid-blend
    assert data["color_ref"].shape == (1, 3, 64, 64) and data["buffers"][0].dtype == torch.float32
    assert data["fingerprint"]["table"] == table.content_hash()
    # interrupted twice, then to the end
    with pytest.raises(RenderInterrupted) as e:
        render2d(table, tmp_path, tiny_models, progress=stop_at(8, KeyboardInterrupt))
    assert e.value.next_frame == 8
    assert render2d(table, tmp_path, tiny_models).resumed_at == 8
    assert_same(tmp_path, want)


def test_a_crash_that_left_frames_past_the_checkpoint_still_resumes_exactly(scene2d, tiny_models, tmp_path):
    """A killed process may have written frames after its last checkpoint; they are rendered again."""
    table, want = scene2d
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(4))
    older = (tmp_path / "older.pt").write_bytes(resume.state_path(tmp_path).read_bytes())
    assert older
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(8))
    shutil.move(tmp_path / "older.pt", resume.state_path(tmp_path))  # the state of frame 3, frames to 7 on disk
    report = render2d(table, tmp_path, tiny_models)
    assert report.resumed_at == 4 and report.unet_calls == steps_from(table, 4)
    assert_same(tmp_path, want)


def test_stills_resume(tiny_models, tmp_path):
    table = make_table(5, mode="none", model=str(tiny_models["folder"]), seed=11)
    render(table, tmp_path / "ref", device="cpu")
    with pytest.raises(Boom):
        render(table, tmp_path / "out", device="cpu", progress=stop_at(2))
    report = render(table, tmp_path / "out", device="cpu")
    assert report.resumed_at == 2 and report.unet_calls == 3 * 4 and report.video is None
    assert_same(tmp_path / "out", outputs(tmp_path / "ref"))


def test_3d_with_depth_maps_resumes(tiny_models, tmp_path_factory, tmp_path):
    depth = save_depth_models(tmp_path_factory.mktemp("depth"))["dpt"]
    table = make_table(
        7, mode="3d", cadence=2, model=str(tiny_models["folder"]), depth_model=str(depth), save_depth_maps=True,
        strength=0.6, noise=0.02, translation_x=4.0, translation_z=8.0, rotation_3d_y=1.0, steps=2,
    )
    render(table, tmp_path / "ref", device="cpu")
    want = outputs(tmp_path / "ref")
    assert len([n for n in want if n.startswith("depth/")]) == 7
    for k in (3, 4):  # after a tween, after a diffusion
        out = tmp_path / f"out{k}"
        with pytest.raises(Boom):
            render(table, out, device="cpu", progress=stop_at(k))
        report = render(table, out, device="cpu")
        assert report.resumed_at == k and report.depth_maps == 7
        assert_same(out, want)


def test_another_scene_does_not_resume(scene2d, tiny_models, tmp_path):
    table, _ = scene2d
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(5))
    other = compile_text(SCENE.replace("seed 5", "seed 6"), "scene.dfm")
    report = render2d(other, tmp_path, tiny_models, on_resume=lambda f, n: pytest.fail("resumed"))
    assert report.resumed_at == 0 and report.unet_calls == steps_from(other, 0)
    assert any("changed (table)" in w for w in report.warnings)
    render2d(other, tmp_path / "ref", tiny_models)
    assert_same(tmp_path, outputs(tmp_path / "ref"))


def test_restart_ignores_the_checkpoint(scene2d, tiny_models, tmp_path):
    table, want = scene2d
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(5))
    report = render2d(table, tmp_path, tiny_models, restart=True)
    assert report.resumed_at == 0 and report.unet_calls == steps_from(table, 0) and not report.warnings
    assert_same(tmp_path, want)


def test_a_damaged_checkpoint_is_ignored_with_a_warning(scene2d, tiny_models, tmp_path):
    table, want = scene2d
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(5))
    path = resume.state_path(tmp_path)
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    report = render2d(table, tmp_path, tiny_models)
    assert report.resumed_at == 0 and any("unreadable" in w for w in report.warnings)
    assert_same(tmp_path, want)


def test_a_missing_frame_before_the_checkpoint_starts_over(scene2d, tiny_models, tmp_path):
    table, want = scene2d
    with pytest.raises(Boom):
        render2d(table, tmp_path, tiny_models, progress=stop_at(5))
    (tmp_path / "frames/00002.png").unlink()
    report = render2d(table, tmp_path, tiny_models)
    assert report.resumed_at == 0 and any("00002.png" in w for w in report.warnings)
    assert_same(tmp_path, want)


def test_cli_resumes_and_says_so(scene2d, tiny_models, tmp_path, monkeypatch, capsys):
    from dfm.runtime.frame import FrameRenderer

    _, want = scene2d
    scene = tmp_path / "scene.dfm"
    scene.write_text(SCENE.replace("mode 2d\n", f'mode 2d\nmodel "{tiny_models["folder"]}"\n'), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["render", str(scene), "--out", str(out), "--device", "cpu", "--quiet"]
    original = FrameRenderer.frame

    def interrupted(self, i, row):
        if i == 6:
            raise KeyboardInterrupt
        return original(self, i, row)

    monkeypatch.setattr(FrameRenderer, "frame", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (f"stopped at frame 6 of 10: frames 0–5 are in {out / 'frames'}; run the "
                                            "same command again to go on from frame 6 (--restart renders from frame 0)")
    assert "No frames have been written" not in err and "Traceback" not in err
    monkeypatch.setattr(FrameRenderer, "frame", original)
    assert main(argv) == 0
    assert "resuming at frame 6 of 10" in capsys.readouterr().err
    assert_same(out, want)
    assert main([*argv, "--restart"]) == 0 and "resuming" not in capsys.readouterr().err


def test_a_killed_process_resumes_exactly(tiny_models, tmp_path):
    """SIGKILL at an unknown point of a real `dfm render` (no flush, no clean-up), then resume."""
    text = SCENE.replace("frames 10", "frames 24").replace("mode 2d\n", f'mode 2d\nmodel "{tiny_models["folder"]}"\n')
    scene = tmp_path / "scene.dfm"
    scene.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dfm", "render", str(scene), "--out", str(out), "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(out.glob("frames/*.png"))) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()  # killed mid-render, not finished
    table = compile_text(text, "scene.dfm")
    report = render(table, out, device="cpu")
    assert 5 <= report.resumed_at < 24  # 6 PNGs on disk: the checkpoint after frame 4 was saved
    render(table, tmp_path / "ref", device="cpu")
    assert_same(out, outputs(tmp_path / "ref"))
