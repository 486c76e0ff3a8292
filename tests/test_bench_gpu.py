"""benchmarks/bench_gpu.py's CPU path (tiny shapes, a few frames): the same script a GPU machine runs,
so its JSON has every field and its UNet count is the table's."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # its `import _common`, as when run as a script
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_cpu_smoke_writes_every_figure(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "bench.json"
    assert bench.main(["--cpu-smoke", "--json", str(out), "--workdir", str(tmp_path / "work")]) == 0
    data = json.loads(out.read_text())
    assert data["plan"]["shapes"] == "tiny" and data["meaningful"] is False
    assert {"torch", "diffusers", "transformers", "python", "cpus", "device"} <= set(data["environment"])
    assert set(data["runs"]) == {"2d", "3d", "2d_4step"}
    for name, run in data["runs"].items():
        dfm = run["dfm"]
        assert dfm["frames"] == run["scene"]["frames"] > 0
        assert dfm["fps"] > 0 and dfm["wall_s"] > 0
        # the render's own StageTimer, per frame
        assert {"denoise", "decode", "warp", "write"} <= set(dfm["per_frame_ms"])
        assert dfm["unet_calls"] == dfm["expected_unet_calls"] > 0, name
        assert run["unet_calls_exact"] is True
        assert "peak_vram_bytes" in dfm and dfm["peak_vram_bytes"] is None  # no CUDA here
        assert run["unet_ms_per_call"] > 0 and 0 <= run["overhead"] <= 1
    # one depth prediction per warped frame (frame 0 warps nothing and saves no depth map here)
    assert data["runs"]["3d"]["dfm"]["depth_calls"] == data["runs"]["3d"]["scene"]["frames"] - 1
    assert "naive" not in data["runs"]["3d"]
    for name in ("2d", "2d_4step"):
        run = data["runs"][name]
        assert run["naive"]["fps"] > 0 and run["speedup"] > 0
        assert run["naive"]["unet_calls"] == run["dfm"]["unet_calls"]  # the same work both ways
    assert data["verdicts"]["unet_calls_exact"] is True
    # the speed-up switches: what the runs used (SDPA found in every attention layer), and each flipped once
    assert data["speedups"]["attention_processors"] == "AttnProcessor2_0"
    assert data["speedups"]["applied"] == "attention=sdpa channels_last=off vae_tiling=off compile=off"
    switches = data["switches"]
    assert set(switches["runs"]) == {"base", "attention=math", "channels_last=on"}
    assert switches["runs"]["attention=math"]["speedups"].startswith("attention=math")
    assert all(r["fps"] > 0 and r["vs_base"] > 0 for r in switches["runs"].values())
    assert switches["vae_tiling"]["off"]["decode_s"] > 0 and switches["vae_tiling"]["on"]["decode_s"] > 0
    printed = capsys.readouterr().out
    assert "dfm per-stage time per frame" in printed and "UNet calls" in printed
    assert "speed-up switches" in printed and "VAE decode at 128²" in printed


def test_expected_unet_calls_is_the_sum_of_effective_steps_over_diffused_rows():
    bench = load_bench()
    table = bench.compile_scene(bench.scene_text("2d", bench.SMOKE, Path("m"), None, frames=7, steps=10,
                                                 strength=0.65, cfg=7.5).replace("cadence 1", "cadence 3"))
    diffused = np.asarray(table["diffused"], dtype=bool)
    assert diffused.tolist() == [True, False, False, True, False, False, True]  # cadence 3: tweens between
    # frame 0 is txt2img (all 10 steps), then int((1 - 0.65) * 10) = 3 steps for frames 3 and 6
    assert bench.expected_unet_calls(table) == 10 + 3 + 3
