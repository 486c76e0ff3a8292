"""One render job (runtime/job.py): the local render, the sharded render (the Ray worker's code, run here by
LocalPool) and the batch worker's render all run `run_job`, so the rules for where a render starts hold
the same on every path; a damaged checkpoint, for one, starts the render over in each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from render_outputs import Boom, stop_at

from dfm.api import compile_text
from dfm.runtime import job, resume
from dfm.runtime.actor import RenderWorker, SceneTask
from dfm.runtime.frame import RenderState
from dfm.runtime.record import read_job_status
from dfm.runtime.render import render
from dfm.scaleout.cluster import LocalPool
from dfm.scaleout.shard import render_sharded

STILLS = """dfm 1
mode none
size 64x64
images_per_prompt 4
steps 2
seed 3
sampler euler
model "{model}"
prompt 0 "a cat"
"""


def local(table, out: Path):
    return render(table, out, device="cpu")


def sharded(table, out: Path):
    with LocalPool("cpu") as pool:
        return render_sharded(table, out, pool, chunk=1)


def worker(table, out: Path):
    outcome = RenderWorker("cpu").render_scene(SceneTask("scene", table, str(out)))
    assert not outcome.error, outcome.error
    return outcome.report


PATHS = {"local": local, "sharded": sharded, "worker": worker}


@pytest.fixture(scope="module")
def stills(tiny_models):
    return compile_text(STILLS.format(model=tiny_models["folder"]))


@pytest.fixture(scope="module")
def reference(stills, tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "reference"
    local(stills, out)
    return {p.name: p.read_bytes() for p in sorted((out / "frames").iterdir())}


def frames(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").iterdir())}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_render_path_runs_the_one_job(path, stills, reference, tmp_path, monkeypatch):
    sources = []
    decide = job.decide_start

    def spy(table, fingerprint, out, restart):
        sources.append(out.root)
        return decide(table, fingerprint, out, restart)

    monkeypatch.setattr(job, "decide_start", spy)
    report = PATHS[path](stills, tmp_path / path)
    assert sources == [tmp_path / path]  # the job decided the start, once
    assert report.frames == 4 and frames(tmp_path / path) == reference
    # what a live view of the folder reads (`dfm studio`): the job's size, and that it finished
    status = read_job_status(tmp_path / path)
    assert status["total"] == 4 and status["todo"] == 4 and status["kept"] is None
    assert status["pid"] == os.getpid() and status["finished"] >= status["started"] and "stopped" not in status


def test_the_job_status_says_what_an_edit_keeps_and_when_a_render_stopped(stills, tmp_path):
    out = tmp_path / "out"
    local(stills, out)
    edited = compile_text(STILLS.format(model=stills.settings.model).replace('"a cat"', '"a cat"\nprompt 3 "a dog"'))
    local(edited, out)
    status = read_job_status(out)
    assert 0 < status["todo"] < status["total"] and "kept" in status["kept"], status
    with pytest.raises(Boom):
        render(stills, tmp_path / "stopped", device="cpu", progress=stop_at(2))
    status = read_job_status(tmp_path / "stopped")
    assert status["todo"] == 4 and status["stopped"] >= status["started"] and "finished" not in status


@pytest.mark.parametrize("path", list(PATHS))
def test_a_damaged_checkpoint_starts_the_render_over_on_every_path(path, stills, reference, tmp_path):
    """A checkpoint of this very render that counts on a damaged frame is not continued, and the record of
    the finished render beside it keeps nothing either: every frame renders again (the sharded render once
    kept the frames the record listed)."""
    out = tmp_path / path
    PATHS[path](stills, out)
    fingerprint = resume.read_record(out).fingerprint
    resume.Snapshot(RenderState(next_frame=3, at=2), fingerprint).save(out)  # "frames 0-2 are done"
    first = out / "frames" / sorted(reference)[0]
    first.write_bytes(first.read_bytes()[:40])  # cut short: the checkpoint counts on a damaged frame
    report = PATHS[path](stills, out)
    assert report.resumed_at == 0 and report.kept_frames == 0
    assert any("rendering again from frame 0" in w for w in report.warnings), report.warnings
    assert frames(out) == reference
    assert not resume.state_path(out).exists()  # finished: nothing left to resume


def test_the_cli_says_what_it_does_before_loading_and_a_rerun_with_nothing_to_render_loads_no_model(
        tiny_models, tmp_path, monkeypatch, capsys):
    from dfm.app.cli import main
    from dfm.runtime.models import StableDiffusion

    scene = tmp_path / "scene.dfm"
    scene.write_text(STILLS.format(model=tiny_models["folder"]), encoding="utf-8")
    argv = ["render", str(scene), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"rendering {scene}: 4 frames, mode none, 64x64, into {tmp_path / 'out'}"
    assert lines[1].startswith("starting the runtime")  # before the imports that take seconds
    loading = next(x for x in lines if x.startswith("loading the diffusers folder"))
    assert loading.endswith("on cpu, float32") and lines.index(loading) < len(lines) - 1
    # the estimate: measured on frame 1 (frame 0 carries one-off costs), for the UNet evaluations left
    table = compile_text(scene.read_text(encoding="utf-8"))
    left = int(table["unet_evals"][2:].sum())
    eta = next(x for x in lines if x.startswith("about "))
    assert f"s per UNet evaluation, measured on frame 1; {left} evaluations left)" in eta

    loads = []
    monkeypatch.setattr(StableDiffusion, "load", lambda self: loads.append(self))
    scene.write_text(scene.read_text(encoding="utf-8") + "# a comment changes no frame\n", encoding="utf-8")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert loads == [] and "all 4 frames kept" in err and "loading" not in err


def test_a_rerun_that_changes_no_frame_ends_without_importing_torch(tiny_models, tmp_path):
    """The up-to-date check (runtime/uptodate.py) gives the render job's answer from the folder's record and
    plain values: a comment-only edit renders nothing, imports neither torch nor diffusers, and writes
    nothing; an edit of a frame goes on to the job."""
    import subprocess
    import sys

    from dfm.runtime.uptodate import kept_whole

    scene = tmp_path / "scene.dfm"
    scene.write_text(STILLS.format(model=tiny_models["folder"]), encoding="utf-8")
    out = tmp_path / "out"
    probe = ("import sys\nfrom dfm.app.cli import main\nrc = main(sys.argv[1:])\n"
             "print(rc, 'torch' in sys.modules, 'diffusers' in sys.modules)\n")

    assert local(compile_text(scene.read_text(encoding="utf-8"), str(scene)), out).frames == 4
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    scene.write_text(scene.read_text(encoding="utf-8") + "# only a comment\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", probe, "render", str(scene), "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.stdout.strip().splitlines()[-1] == "0 False False"
    assert f"all 4 frames kept: nothing the frames read changed; {out} is up to date" in done.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing written

    def kept(text: str, **given) -> str | None:
        options = {"model": None, "device": "cpu", "dtype": "auto", "speed": None, "scene_path": str(scene),
                   "allow_pickle": False, **given}
        return kept_whole(compile_text(text, str(scene)), out, **options)

    text = scene.read_text(encoding="utf-8")
    assert kept(text) is not None
    assert kept(text.replace("seed 3", "seed 4")) is None  # every frame changes: the job renders
    assert kept(text, dtype="bf16") is None  # another precision: other bytes
    assert kept(text.replace("images_per_prompt 4", "images_per_prompt 5")) is None  # a new frame


def test_only_a_device_known_without_torch_is_taken_as_the_cpu(monkeypatch):
    from dfm.runtime import uptodate

    assert uptodate.cpu_placement("cpu", "auto") == ("cpu", "torch.float32")
    assert uptodate.cpu_placement("cpu", "bf16") == ("cpu", "torch.bfloat16")
    assert uptodate.cpu_placement("cpu", "fp16") is None  # refused on the CPU: the job says so
    assert uptodate.cpu_placement("cuda", "auto") is None
    monkeypatch.setattr(uptodate.os.path, "exists", lambda p: p == "/proc/driver/nvidia")
    assert uptodate.cpu_placement("auto", "auto") is None  # a GPU may be there: torch decides
