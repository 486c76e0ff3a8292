"""`dfm batch` and `dfm render --ray`: variations written into the scene text and checked before anything
renders, batches here and on a local Ray cluster (2 CPUs) with their outputs byte for byte those of local
renders, a failure reported per scene, sharded stills / interpolation / video renders equal to local
ones, and a worker killed mid-scene leaving a scene the rerun completes to the same bytes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dfm.api import compile_file, compile_text
from dfm.app.cli import main
from dfm.runtime.render import render
from dfm.scaleout import batch
from dfm.scaleout.batch import BatchError, BatchInterrupted, BatchObserver, parse_vary, plan, run_batch, vary_text
from dfm.scaleout.cluster import LocalPool, Queue, Slot, WorkerLost, plan_workers, run_queue
from dfm.scaleout.shard import chunks, render_sharded

ANIM = """dfm 1
mode 2d
size 64x64
fps 12
frames {frames}
steps 4
strength 0.5
seed 5 fixed
scale 7
sampler euler
model "{model}"
prompt 0 "a cat"
zoom 0:(1.02)
"""
STILLS = """dfm 1
mode none
size 64x64
images_per_prompt 2
steps 4
seed 9
sampler euler
model "{model}"
prompt 0 "a cat"
prompt 1 "a dog"
"""
INTERP = """dfm 1
mode interpolation
size 64x64
fps 12
interpolate_x_frames 3
steps 4
seed 4
sampler euler
model "{model}"
prompt 0 "a cat"
prompt 4 "a dog"
"""
VIDEO = """dfm 1
mode video
size 64x64
fps 12
video_init_path "{clip}"
frames 5
steps 4
strength 0.5
seed 3
sampler euler
model "{model}"
prompt 0 "a cat"
"""
BROKEN = ANIM.replace("zoom", 'init_image "missing.png"\nzoom')


@pytest.fixture(scope="module")
def scenes(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    model = tiny_models["folder"]

    def write(name: str, text: str) -> str:
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return {
        "anim": write("anim.dfm", ANIM.format(frames=4, model=model)),
        "long": write("long.dfm", ANIM.format(frames=40, model=model)),
        "stills": write("stills.dfm", STILLS.format(model=model)),
        "interp": write("interp.dfm", INTERP.format(model=model)),
        "broken": write("broken.dfm", BROKEN.format(frames=4, model=model)),
        "video": write("video.dfm", VIDEO.format(model=model, clip=_clip(folder / "clip.mkv"))),
    }


def _clip(path: Path) -> Path:
    """8 frames of noise, lossless (FFV1)."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=12, codec="ffv1", pix_fmt_in="rgb24",
                                         pix_fmt_out="bgr0", macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    rng = np.random.default_rng(0)
    for _ in range(8):
        writer.send(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    writer.close()
    return path


_LOCAL: dict[tuple[str, str | None], Path] = {}


def local(scene: str, out: Path, text: str | None = None) -> Path:
    """`dfm render` of the scene (or of `text`, a variation of it), in this process: the reference the tests
    compare with, rendered once per scene and text (it is only read), in `out` the first time."""
    if (scene, text) not in _LOCAL:
        table = compile_file(scene) if text is None else compile_text(text, scene)
        render(table, out, scene_path=scene, device="cpu")
        _LOCAL[scene, text] = out
    return _LOCAL[scene, text]


def assert_same_output(a: Path, b: Path) -> None:
    """Every frame, the video and the table byte for byte."""
    names = sorted(p.name for p in (a / "frames").iterdir())
    assert names == sorted(p.name for p in (b / "frames").iterdir()) and names
    for name in names:
        assert (a / "frames" / name).read_bytes() == (b / "frames" / name).read_bytes(), name
    assert (a / "video.mp4").is_file() == (b / "video.mp4").is_file()
    if (a / "video.mp4").is_file():
        assert (a / "video.mp4").read_bytes() == (b / "video.mp4").read_bytes()
    assert (a / "table.csv").read_text() == (b / "table.csv").read_text()
    assert json.loads((a / "manifest.json").read_text())["frames"] == len(names)


# ---- variations ----------------------------------------------------------------------------------------------


def test_vary_values_ranges_lists_and_pipes():
    assert parse_vary("seed=1..4").values == ("1", "2", "3", "4")
    assert parse_vary("strength=0.5,0.6") == batch.Variation("strength", ("0.5", "0.6"))
    assert parse_vary("strength_schedule=0:(0.5), 9:(0.7)|0.6").values == ("0:(0.5), 9:(0.7)", "0.6")
    assert parse_vary("scale=5,6").name == "cfg_scale"  # an alias names its parameter


@pytest.mark.parametrize(("spec", "words"), [
    ("sed=1..3", "did you mean `seed`"),
    ("seed", "NAME=VALUES"),
    ("seed=3..1", "ends before it starts"),
    ("strength=0.5,,0.6", "empty value"),
    ("strength=0.5,0.5", "given twice"),
])
def test_bad_vary_is_an_error_before_anything(spec, words):
    with pytest.raises(BatchError) as e:
        parse_vary(spec)
    assert words in e.value.message + e.value.help


def test_vary_text_replaces_the_statement_or_adds_one():
    text = ANIM.format(frames=4, model="m")
    varied = vary_text(text, "a.dfm", [("seed", "3"), ("cfg_scale", "5"), ("noise", "0:(0.1)")])
    assert "seed 3 fixed\n" in varied  # the seed behaviour stays
    assert "cfg_scale 5\n" in varied and "scale 7" not in varied  # written by its alias in the scene
    assert varied.endswith("noise 0:(0.1)\n")
    assert vary_text(text, "a.dfm", [("seed", "3 iter")]).count("seed 3 iter\n") == 1
    stills = vary_text(STILLS.format(model="m"), "s.dfm", [("prompt", 'a "red" fox')])
    assert stills.count("\nprompt ") == 1 and 'prompt "a \\"red\\" fox"' in stills
    assert compile_text(stills, "s.dfm").columns["prompt"][0] == 'a "red" fox'


def test_plan_lays_out_a_sweep_and_checks_every_variation(scenes, tmp_path):
    sources = [(scenes["anim"], Path(scenes["anim"]).read_text())]
    p = plan(sources, [parse_vary("seed=1,2"), parse_vary("strength=0.5,0.6")], tmp_path)
    assert [j.key for j in p.jobs] == ["anim/seed=1,strength=0.5", "anim/seed=1,strength=0.6",
                                       "anim/seed=2,strength=0.5", "anim/seed=2,strength=0.6"]
    assert p.jobs[3].out_dir == tmp_path / "anim" / "seed=2,strength=0.6"
    assert list(p.jobs[3].table.columns["strength"]) == [0.6] * 4 and p.jobs[3].table.columns["seed"][0] == 2
    bad = plan(sources, [parse_vary("strength=0.5,1.5")], tmp_path)
    assert bad.errors and len(bad.jobs) == 1
    [d] = [d for d in bad.diagnostics if d.is_error]
    assert d.path.endswith("anim.dfm [strength=1.5]") and d.parameter == "strength"
    assert "strength 1.5" in bad.sources[d.path]
    with pytest.raises(BatchError, match="both render into"):
        plan([("a/x.dfm", ""), ("b/x.dfm", "")], [], tmp_path)


def test_a_sweep_too_large_is_refused_before_its_combinations_are_made(tmp_path):
    values = tuple(str(i) for i in range(batch.MAX_JOBS))
    big = [batch.Variation(name, values) for name in ("seed", "steps", "cfg_scale")]
    start = time.monotonic()  # 10**12 combinations: listing them first would never finish
    with pytest.raises(BatchError, match="would render 1000000000000 scenes"):
        plan([("a.dfm", "")], big, tmp_path)
    assert time.monotonic() - start < 5


# ---- batches in this process ---------------------------------------------------------------------------------


def test_batch_renders_each_scene_like_render_and_reports_a_failure(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["batch", scenes["anim"], scenes["broken"], scenes["stills"], "--out", str(out), "--device", "cpu",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "failed broken" in err and "init image" in err and "help: check the path of init_image" in err
    assert "batch: 3 scenes: 2 done, 1 failed" in err
    assert_same_output(out / "anim", local(scenes["anim"], tmp_path / "anim"))
    assert_same_output(out / "stills", local(scenes["stills"], tmp_path / "stills"))
    summary = json.loads((out / "batch.json").read_text())
    status = {s["out"]: s for s in summary["scenes"]}
    assert {k: s["status"] for k, s in status.items()} == {"anim": "done", "broken": "failed", "stills": "done"}
    assert sum(s.get("model_loaded", False) for s in status.values()) == 1  # one model, loaded once

    # the rerun keeps every finished frame (incremental, as `dfm render` again) and still reports the failure
    assert main(["batch", scenes["anim"], scenes["broken"], scenes["stills"], "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "2 up to date, 1 failed" in err
    assert_same_output(out / "anim", local(scenes["anim"], tmp_path / "anim"))


def test_a_bad_variation_renders_nothing(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", scenes["anim"], "--vary", "strength=0.5,1.5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "anim.dfm [strength=1.5]" in err and "nothing was rendered" in err
    assert main(["batch", scenes["anim"], "--vary", "strenght=0.5", "--out", str(out)]) == 2
    assert "did you mean `strength`" in capsys.readouterr().err
    assert not out.exists()
    assert main(["batch", scenes["anim"], "--vary", "seed=1..2", "--out", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(str(out / "anim" / "seed=2"))
    assert not out.exists()


def test_a_device_that_is_not_there_stops_the_batch_once(scenes, tmp_path, capsys):
    assert main(["batch", scenes["anim"], scenes["stills"], "--device", "tpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("unknown device 'tpu'") == 1 and "help:" in err and not (tmp_path / "o").exists()
    assert main(["render", scenes["stills"], "--workers", "2", "--out", str(tmp_path / "o")]) == 2
    assert "apply with --ray only" in capsys.readouterr().err


def test_an_interrupted_batch_continues_to_the_same_bytes(scenes, tmp_path):
    """The sequential path with an injected Ctrl-C mid-scene: the rerun resumes it."""
    sources = [(scenes["anim"], Path(scenes["anim"]).read_text())]
    jobs = plan(sources, [parse_vary("seed=1,2")], tmp_path / "out").jobs

    class StopAt(BatchObserver):
        def progress(self, job, resumed_at, done, total):
            if job.key == "anim/seed=2" and done == 2:
                raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as e, LocalPool("cpu") as pool:
        run_batch(jobs, pool, observer=StopAt())
    assert [r.status for r in e.value.results] == ["done", "not run"]
    again = run_batch(jobs, LocalPool("cpu"))
    assert [r.status for r in again] == ["up to date", "done"] and again[1].outcome.report.resumed_at == 2
    assert_same_output(jobs[1].out_dir, local(scenes["anim"], tmp_path / "ref", jobs[1].text))


class FlakyPool(LocalPool):
    """A local pool whose worker 'dies' on the first `deaths` calls."""

    def __init__(self, deaths: int) -> None:
        super().__init__("cpu")
        self.deaths = deaths
        self.replaced = 0

    def call(self, slot, method, *args):
        if self.deaths:
            self.deaths -= 1
            return "dead"
        return super().call(slot, method, *args)

    def result(self, call):
        if call == "dead":
            raise WorkerLost("killed")
        return super().result(call)

    def replace(self, slot):
        self.replaced += 1


def test_a_scene_whose_worker_dies_runs_again_or_is_reported(scenes, tmp_path):
    sources = [(scenes["stills"], Path(scenes["stills"]).read_text())]
    jobs = plan(sources, [], tmp_path / "a").jobs
    pool = FlakyPool(deaths=1)
    [r] = run_batch(jobs, pool, retries=1)
    assert r.status == "done" and r.attempts == 2 and pool.replaced == 1
    [r] = run_batch(plan(sources, [], tmp_path / "b").jobs, FlakyPool(deaths=1), retries=0)
    assert r.status == "failed" and "died" in r.outcome.error and "resumes" in r.outcome.help


def test_the_queue_gives_a_worker_the_jobs_of_its_model():
    queue = Queue(["a1", "b1", "a2", "b2"], affinity=lambda item: item[0])
    slot = Slot("w", None)
    assert [queue.take(slot) for _ in range(4)] == ["a1", "a2", "b1", "b2"]
    seen = []
    run_queue(LocalPool("cpu"), Queue([1, 2, 3]), submit=lambda slot, item: ("ping",),
              done=lambda slot, item, value: seen.append((item, value)), lost=lambda *a: False)
    assert seen == [(1, "local"), (2, "local"), (3, "local")]


def test_worker_shapes():
    assert plan_workers({"CPU": 8, "GPU": 4}, "auto", workers=None, cpus_per_worker=1, limit=None).count == 4
    cpu = plan_workers({"CPU": 8, "GPU": 4}, "cpu", workers=None, cpus_per_worker=2, limit=3)
    assert (cpu.count, cpu.num_gpus, cpu.threads) == (3, 0, 2)
    assert plan_workers({"CPU": 2}, "auto", workers=None, cpus_per_worker=1, limit=None).device == "cpu"
    assert chunks(list(range(3, 40)), 2, most=4)[:2] == [[3, 4, 5, 6], [7, 8, 9, 10]]


# ---- frames split across workers, without Ray -----------------------------------------------------------------


def test_sharded_stills_equal_a_local_render_and_resume_with_either(scenes, tmp_path):
    ref = local(scenes["stills"], tmp_path / "ref")
    table = compile_file(scenes["stills"])
    out = tmp_path / "sharded"
    seen = []
    with LocalPool("cpu") as pool:
        report = render_sharded(table, out, pool, scene_path=scenes["stills"],
                                progress=lambda done, total: seen.append(done), chunk=1)
    assert seen == [1, 2, 3, 4] and report.frames == 4 and report.unet_calls > 0
    assert_same_output(out, ref)
    assert not (out / ".dfm-state" / "state.pt").exists()

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    edited = compile_text(Path(scenes["stills"]).read_text().replace("seed 9", "seed 10"), scenes["stills"])
    with pytest.raises(KeyboardInterrupt), LocalPool("cpu") as pool:
        render_sharded(edited, out, pool, scene_path=scenes["stills"], progress=stop, chunk=1)
    resumed = []
    report = render(edited, out, scene_path=scenes["stills"], device="cpu", on_resume=lambda f, n: resumed.append(f))
    assert resumed == [2] and report.resumed_at == 2
    render(edited, tmp_path / "ref2", scene_path=scenes["stills"], device="cpu")
    assert_same_output(out, tmp_path / "ref2")


def test_render_ray_refuses_frames_that_depend_on_each_other(scenes, tmp_path, capsys):
    assert main(["render", scenes["anim"], "--ray", "local", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cannot be split across workers" in err and "previous one" in err and "dfm batch" in err


def test_without_ray_the_ray_option_says_how_to_install_it(scenes, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    assert main(["batch", scenes["stills"], "--ray", "local", "--out", str(tmp_path / "o")]) == 2
    assert main(["render", scenes["stills"], "--ray", "auto", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("pip install -e '.[ray]'") == 2 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ---- on a local Ray cluster ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_pool(tiny_models):
    """A local Ray cluster of 2 CPUs and a pool of 2 CPU workers, shared by the tests below."""
    ray = pytest.importorskip("ray")
    from dfm.scaleout.cluster import RayPool

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, logging_level="error")
    try:
        with RayPool("local", device="cpu") as pool:
            assert len(pool.slots) == 2
            while len(pool.usable()) < 2:  # both actors up, so a batch spreads over both
                time.sleep(0.1)
            yield pool
    finally:
        ray.shutdown()


def test_ray_batch_of_scenes_and_a_sweep_equals_local_renders(ray_pool, scenes, tmp_path):
    sources = [(scenes[k], Path(scenes[k]).read_text()) for k in ("anim", "broken", "stills")]
    out = tmp_path / "out"
    jobs = plan(sources, [], out).jobs
    sweep = plan(sources[:1], [parse_vary("seed=1,2"), parse_vary("strength=0.5,0.6")], out).jobs
    results = run_batch(jobs + sweep, ray_pool, summary=out / "batch.json")
    status = {r.job.key: r.status for r in results}
    assert status.pop("broken") == "failed" and set(status.values()) == {"done"}
    failed = next(r for r in results if r.job.key == "broken")
    assert "init image" in failed.outcome.error and failed.outcome.help
    assert len({r.outcome.worker for r in results}) == 2  # queued across both actors
    assert sum(r.outcome.loaded_model for r in results) <= 2  # the model loaded once per actor at most
    assert_same_output(out / "anim", local(scenes["anim"], tmp_path / "anim"))
    assert_same_output(out / "stills", local(scenes["stills"], tmp_path / "stills"))
    for job in sweep:
        assert_same_output(job.out_dir, local(job.scene, tmp_path / job.key, job.text))
    assert json.loads((out / "batch.json").read_text())["scenes"][1]["status"] == "failed"


def test_ray_sharded_renders_equal_local_renders(ray_pool, scenes, tmp_path, monkeypatch, capsys):
    for name in ("stills", "interp", "video"):
        table = compile_file(scenes[name])
        report = render_sharded(table, tmp_path / name, ray_pool, scene_path=scenes[name], chunk=2)
        assert report.frames == len(table)
        assert_same_output(tmp_path / name, local(scenes[name], tmp_path / f"{name}-local"))

    class Borrowed:  # the CLI closes its pool; this one is the module's
        def __enter__(self):
            return ray_pool

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("dfm.scaleout.cluster.open_pool", lambda *a, **k: Borrowed())
    out = tmp_path / "cli"
    assert main(["render", scenes["interp"], "--ray", "local", "--out", str(out), "--quiet"]) == 0
    assert_same_output(out, tmp_path / "interp-local")


def test_a_worker_killed_mid_scene_leaves_a_scene_the_rerun_completes(ray_pool, scenes, tmp_path):
    import ray

    sources = [(scenes["long"], Path(scenes["long"]).read_text())]
    jobs = plan(sources, [], tmp_path / "out").jobs

    class Kill(BatchObserver):
        killed = None

        def started(self, job, worker):
            self.worker = worker

        def progress(self, job, resumed_at, done, total):  # polled from the actor while it renders
            if self.killed is None and done >= 3 and (job.out_dir / ".dfm-state" / "state.pt").is_file():
                self.killed = done
                ray.kill(ray.get_actor(self.worker), no_restart=True)

    kill = Kill()
    [r] = run_batch(jobs, ray_pool, observer=kill, retries=0)
    assert kill.killed is not None and r.status == "failed" and "died" in r.outcome.error
    assert (jobs[0].out_dir / ".dfm-state" / "state.pt").is_file()  # a checkpoint to resume from
    [again] = run_batch(jobs, ray_pool)
    assert again.status == "done" and again.outcome.report.resumed_at > 0
    assert_same_output(jobs[0].out_dir, local(scenes["long"], tmp_path / "ref"))


def test_a_batch_never_replaces_a_batch_json_of_the_users(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.json").write_text('{"my": "notes"}')
    assert main(["batch", scenes["anim"], "--out", str(out), "--dry-run"]) == 2
    assert (out / "batch.json").read_text() == '{"my": "notes"}'
    assert "not a dfm batch summary" in capsys.readouterr().err
    (out / "batch.json").write_text('{"dfm_batch": 1, "scenes": []}')  # an earlier batch's: rewritten
    assert main(["batch", scenes["anim"], "--out", str(out), "--dry-run"]) == 0
