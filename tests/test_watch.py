"""Watch mode: a render (or preview) again after each save, incremental, the loaded model reused; a save
with errors keeps the last good render; a save during a render cancels it at the next frame boundary."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_incremental import BASE, EDITS, outputs

from dfm.api import compile_text
from dfm.app.cli import build_parser
from dfm.app.watch import Watcher, preview_watcher, render_watcher
from dfm.runtime import models as models_module
from dfm.runtime.render import RenderCancelled, RenderReport, render


def scene_file(tmp_path: Path, text: str) -> Path:
    scene = tmp_path / "scene.dfm"
    scene.write_text(text, encoding="utf-8")
    return scene


def render_args(scene: Path, out: Path, tiny_models):
    return build_parser().parse_args(["render", str(scene), "--out", str(out), "--model", str(tiny_models["folder"]),
                                      "--device", "cpu", "--quiet", "--watch"])


def test_each_save_renders_again_incrementally_with_the_model_loaded_once(tiny_models, tmp_path, monkeypatch):
    loads = []
    real_load = models_module.StableDiffusion.load
    monkeypatch.setattr(models_module.StableDiffusion, "load", lambda self: (loads.append(self), real_load(self)))
    scene = scene_file(tmp_path, BASE)
    said: list[str] = []
    watcher = render_watcher(render_args(scene, tmp_path / "out", tiny_models), echo=said.append)
    v2 = EDITS["prompt"][0]
    v3 = v2.replace("7:(1)", "7:(3)")

    def saves():
        for text in (v2, v3):
            watcher.wait()  # each render finishes before the next save
            scene.write_text(text, encoding="utf-8")
            yield {("modified", str(scene))}

    assert watcher.run(saves()) == 0
    reports = watcher.results
    assert [type(r) for r in reports] == [RenderReport] * 3
    assert [r.kept_frames for r in reports] == [0, 6, 7]
    assert reports[1].kept.startswith("frames 0–5 kept") and reports[2].kept.startswith("frames 0–6 kept")
    assert reports[1].kept in said and reports[2].kept in said
    assert len(loads) == 3 and len({id(m) for m in loads}) == 1  # one model, loaded once, used by every render
    render(compile_text(v3, "scene.dfm"), tmp_path / "ref", model=str(tiny_models["folder"]), device="cpu")
    assert outputs(tmp_path / "out") == outputs(tmp_path / "ref")


def test_a_save_with_errors_keeps_the_last_good_render(tiny_models, tmp_path):
    scene = scene_file(tmp_path, BASE)
    said: list[str] = []
    watcher = render_watcher(render_args(scene, tmp_path / "out", tiny_models), echo=said.append)

    def saves():
        watcher.wait()
        before = outputs(tmp_path / "out")
        scene.write_text(BASE.replace("zoom 0:(1.02)", "zoom 0:(1,02)"), encoding="utf-8")
        yield 1
        assert not watcher.busy and outputs(tmp_path / "out") == before  # nothing started, nothing touched
        yield 2  # a save that changes nothing starts nothing either
        scene.write_text(EDITS["seed"][0], encoding="utf-8")
        yield 3

    assert watcher.run(saves()) == 0
    assert len(watcher.results) == 2 and watcher.results[1].kept_frames == 0
    assert any("DFM011" in s for s in said) and any("has errors: the last good render stays" in s for s in said)


def test_a_save_during_a_render_cancels_it_at_the_next_frame(tiny_models, tmp_path):
    scene = scene_file(tmp_path, BASE)
    out = tmp_path / "out"
    held = threading.Event()

    def job(result, cancel):
        def progress(done, total):
            if done == 3 and not cancel.is_set():  # hold the first render after frame 2 until the save
                held.set()
                assert cancel.wait(30)

        return render(result.table, out, model=str(tiny_models["folder"]), device="cpu", progress=progress,
                      cancel=cancel.is_set)

    watcher = Watcher(scene, job, echo=lambda s: None)

    def saves():
        assert held.wait(60)
        scene.write_text(EDITS["key"][0], encoding="utf-8")  # changes from frame 7
        yield 1

    assert watcher.run(saves()) == 0
    first, second = watcher.results
    assert isinstance(first, RenderCancelled) and first.next_frame == 3
    assert second.kept_frames == 3  # frames 0-2 of the cancelled render are the new scene's too
    render(compile_text(EDITS["key"][0], "scene.dfm"), tmp_path / "ref", model=str(tiny_models["folder"]),
           device="cpu")
    assert outputs(out) == outputs(tmp_path / "ref")


def test_preview_watch_follows_real_file_events(tmp_path):
    pytest.importorskip("watchfiles")
    scene = scene_file(tmp_path, BASE)
    args = build_parser().parse_args(["preview", str(scene), "-o", str(tmp_path / "p.mp4"), "--quiet", "--watch"])
    watcher = preview_watcher(args, echo=lambda s: None)
    runner = threading.Thread(target=watcher.run, daemon=True)
    runner.start()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(watcher.results) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(watcher.results) >= count

    wait_for(1)
    first = (tmp_path / "p.mp4").read_bytes()
    time.sleep(0.5)  # the watcher is watching by now
    scene.write_text(BASE.replace("zoom 0:(1.02)", "zoom 0:(1.05)"), encoding="utf-8")
    wait_for(2)
    watcher.stop.set()
    runner.join(30)
    assert not runner.is_alive()
    assert watcher.results[1] == tmp_path / "p.mp4" and (tmp_path / "p.mp4").read_bytes() != first
    assert (tmp_path / "p_strip.png").is_file()  # the strip beside the video, as `dfm preview` writes it


STILLS = """dfm 1
mode none
size 64x64
images_per_prompt 2
steps 3
seed 9
sampler euler
prompt 0 "a cat"
"""


def test_watch_renders_under_the_speed_up_switches(tiny_models, tmp_path, monkeypatch, capsys):
    import json

    import dfm.app.watch

    scene = scene_file(tmp_path, STILLS)
    switches = ["--dtype", "fp32", "--attention", "math", "--vae-tiling", "on"]
    args = build_parser().parse_args(["render", str(scene), "--out", str(tmp_path / "out"), "--model",
                                      str(tiny_models["folder"]), "--device", "cpu", "--quiet", "--watch", *switches])
    watcher = render_watcher(args, echo=lambda s: None)

    def saves():
        watcher.wait()
        scene.write_text(STILLS + 'prompt 1 "a dog"\n', encoding="utf-8")  # 2 more frames; the first 2 stay
        yield 1

    assert watcher.run(saves()) == 0
    first, second = watcher.results
    assert isinstance(first, RenderReport) and first.dtype == "float32"
    assert second.kept_frames == 2  # the same switches: the unchanged frames are kept
    made = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert made["speedups"] == "attention=math channels_last=off vae_tiling=on compile=off"
    from dfm.runtime.speedups import Speedups

    ref = tmp_path / "ref"
    render(compile_text(STILLS + 'prompt 1 "a dog"\n', str(scene)), ref, model=str(tiny_models["folder"]),
           device="cpu", dtype="fp32", speed=Speedups(attention="math", vae_tiling="on"))
    assert outputs(tmp_path / "out") == outputs(ref)

    # the command hands the switches to the watcher (no longer refused); --watch with --ray still is
    seen = []
    monkeypatch.setattr(dfm.app.watch, "watch_render", lambda a: seen.append(a) or 0)
    from dfm.app.cli import main

    assert main(["render", str(scene), "--watch", "--compile", *switches]) == 0
    assert seen[0].compile and seen[0].dtype == "fp32"
    monkeypatch.undo()
    assert main(["render", str(scene), "--watch", "--ray", "local", "--dtype", "fp32"]) == 2
    assert "leave out --ray" in capsys.readouterr().err


def test_a_failed_job_is_kept_without_the_frames_that_raised_it(tmp_path):
    """`results` keeps each job's exception: its traceback (and those it chains) would keep the render's
    locals, tensors on the device among them, alive for the rest of the watch."""

    def job(result, cancel):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RenderCancelled(1, 2) from inner

    scene = scene_file(tmp_path, BASE)
    watcher = Watcher(scene, job, echo=lambda _: None)
    assert watcher.run([]) == 0
    (exc,) = watcher.results
    assert isinstance(exc, RenderCancelled) and exc.__traceback__ is None
    assert isinstance(exc.__cause__, KeyboardInterrupt) and exc.__cause__.__traceback__ is None
