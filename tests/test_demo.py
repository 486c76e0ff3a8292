"""`dfm demo` (what `make demo` runs): offline it still makes the table, the plot and the motion preview, then
says in one line how to render for real; with a model it estimates a CPU render's time before starting."""

import csv
import io
import threading
import time
import urllib.error

from dfm.api import compile_text
from dfm.app import demo
from dfm.app.cli import main


def test_offline_demo_makes_table_plot_preview_and_one_hint_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    assert time.perf_counter() - start < 60  # no hub retries: the cache and HF_HUB_OFFLINE decide at once
    out = tmp_path / "demo"
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert len(rows) == 48 and {r["steps"] for r in rows} == {"4"} and {r["cfg_scale"] for r in rows} == {"0.0"}
    # SD-Turbo's defaults at Deforum's strength 0.65: 4 steps for frame 0, 1 for each later diffusion (cadence 2)
    assert [r["effective_steps"] for r in rows[:4]] == ["4", "0", "1", "0"]
    for name in ("plot.png", "preview_strip.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "preview.mp4").stat().st_size > 10_000 and not (out / "frames").exists()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0] and "--model PATH" in lines[0]


def test_reachability_is_decided_without_the_network_when_it_can(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "local").mkdir()
    assert demo.reachable("local", tmp_path).ok
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = demo.reachable("stabilityai/sd-turbo", tmp_path)
    assert not r.ok and "HF_HUB_OFFLINE" in r.why
    snap = tmp_path / "empty-cache" / "models--stabilityai--sd-turbo" / "snapshots" / "abc"
    (snap / "unet").mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (snap / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert demo.reachable("stabilityai/sd-turbo", tmp_path).ok  # in the cache: offline is no obstacle


def test_a_reachable_model_renders_and_its_estimate_is_measured(tiny_models, tmp_path, capsys):
    """No guess from the hardware before the render (it was off by 30x): the work in UNet evaluations, then
    the render's own estimate, measured on its second frame."""
    scene = tmp_path / "mini.dfm"
    scene.write_text('dfm 1\nmode 2d\nsize 64x64\nframes 3\nsteps 4\nstrength 0.5\nprompt 0 "a cat"\n'
                     'zoom 0:(1.01)\n')
    code = main(["demo", str(scene), "--out", str(tmp_path / "out"), "--model", str(tiny_models["folder"]),
                 "--device", "cpu", "--yes"])
    assert code == 0
    err = capsys.readouterr().err
    evals = int(compile_text(scene.read_text())["unet_evals"].sum())
    assert f"no GPU: rendering 3 frames ({evals} UNet evaluations)" in err
    assert "s per UNet evaluation, measured on frame 1" in err and "roughly" not in err
    assert len(list((tmp_path / "out" / "render" / "frames").glob("*.png"))) == 3
    assert (tmp_path / "out" / "preview.mp4").is_file() and (tmp_path / "out" / "render" / "video.mp4").is_file()


def test_the_demo_never_writes_into_a_folder_of_other_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "plot.png").write_bytes(b"my plot")
    (mine / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(mine)]) == 1
    assert "notes.txt" in capsys.readouterr().err
    assert (mine / "plot.png").read_bytes() == b"my plot" and sorted(p.name for p in mine.iterdir()) == [
        "notes.txt", "plot.png"]
    again = tmp_path / "again"  # a folder of the demo's own outputs: run again over them
    assert main(["demo", "--out", str(again)]) == 0
    assert main(["demo", "--out", str(again)]) == 0


def test_the_hub_probe_gives_up_after_the_timeout(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(demo, "PROBE_TIMEOUT", 0.2)
    gate = threading.Event()

    def hanging_lookup(*args, **kwargs):  # a name lookup that hangs until the test is done with it
        gate.wait(10)
        raise urllib.error.URLError("released by the test")

    monkeypatch.setattr(demo.urllib.request, "urlopen", hanging_lookup)
    start = time.perf_counter()
    try:
        r = demo.reachable("stabilityai/sd-turbo", tmp_path)
    finally:
        gate.set()  # the abandoned probe thread ends cleanly instead of failing in a later test
    assert time.perf_counter() - start < 2 and not r.ok and "did not answer in" in r.why
