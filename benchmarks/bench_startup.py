"""Start-up of every command but `render`, and the motion preview's frame rate at 512².

    .venv/bin/python benchmarks/bench_startup.py [--repeat 5] [--size 512] [--frames 120]

Each command (`--help`, check, fmt, compile, plot, preview, lsp) runs as a subprocess (the `dfm`
console script next to this interpreter) on a tiny scene written here: best and median of `--repeat`
wall times. A bare `python -c pass` is the floor, and each command's time is also printed as a ratio to
it (a figure that travels between machines better than seconds). A probe run of each command in a
fresh interpreter lists the heavy modules (torch, diffusers, transformers, ...) it loaded: there must be
none, since only `render` needs them. Then the preview:
`preview_frames` in this process at `--size`² in 2D (the camera over the test card, composed matrices)
and in 3D (the flat card warped frame after frame), and `dfm preview` of `--frames` frames at `--size`²
end to end (start-up, frames and the H.264 encoding).

Targets (issue 14): `dfm preview` start-up < 1 s and ≥ 60 frames/s at 512² in 2D; no heavy module in
any of these commands. Exits 1 only when a command loaded a heavy module (that is a bug, not a slow
machine); a slow machine just prints worse figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "diffusers", "transformers", "accelerate")
STARTUP_TARGET_S = 1.0
FPS_TARGET = 60.0

TINY = 'dfm 1\nsize 64x64\nfps 8\nframes 6\nprompt 0 "a cat"\nzoom 0:(1.02)\nangle 0:(1)\n'
MOTION_2D = "zoom 0:(1.0025 + 0.002*sin(1.25*pi*t/30))\nangle 0:(0.5)\ntranslation_x 0:(1), 60:(-2)\n"
MOTION_3D = "mode 3d\ntranslation_z 0:(2)\nrotation_3d_y 0:(0.5)\ntranslation_x 0:(1)\n"

COMMANDS = {
    "--help": ["--help"],
    "check": ["check", "tiny.dfm"],
    "fmt": ["fmt", "--check", "tiny.dfm"],
    "compile": ["compile", "tiny.dfm", "-o", "table.csv"],
    "plot": ["plot", "tiny.dfm", "-o", "plot.png"],
    "preview": ["preview", "tiny.dfm", "-o", "preview.mp4", "--quiet"],
    "lsp": ["lsp"],  # the language server, started and its input ended at once
}

PROBE = f"""
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})),
                            file=sys.__stdout__))
from dfm.app.cli import main
sys.stdout = sys.stderr  # the command's own output; stdout carries the module list
sys.exit(main(sys.argv[1:]))
"""


def dfm_command() -> list[str]:
    exe = Path(sys.executable).with_name("dfm")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dfm"]


def wall(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return took


def heavy_loaded(args: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"probe of dfm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def preview_fps(body: str, size: int, frames: int) -> float:
    from dfm.api import compile_text
    from dfm.runtime.preview import preview_frames

    table = compile_text(f'dfm 1\nsize {size}x{size}\nfps 30\nframes {frames}\nprompt 0 "x"\n{body}')
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        n = sum(1 for _ in preview_frames(table))
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=512, help="preview frame size (square)")
    ap.add_argument("--frames", type=int, default=120, help="frames of the end-to-end `dfm preview`")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    dfm = dfm_command()
    figures: dict[str, object] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "commands": {}}
    bad: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dfm-startup-") as tmp:
        cwd = Path(tmp)
        (cwd / "tiny.dfm").write_text(TINY)
        (cwd / "big.dfm").write_text(
            f'dfm 1\nsize {args.size}x{args.size}\nfps 30\nframes {args.frames}\nprompt 0 "x"\n{MOTION_2D}')
        floor = min(wall([sys.executable, "-c", "pass"], cwd, env) for _ in range(args.repeat))
        print(f"{os.cpu_count()} CPUs, Python {figures['python']}; {' '.join(dfm)}")
        print(f"interpreter floor (python -c pass): {floor:.3f} s\n")
        print(f"{'command':<10}{'best':>8}{'median':>9}{'x floor':>9}  heavy modules")
        for name, cmd in COMMANDS.items():
            wall(dfm + cmd, cwd, env)  # warm the file cache
            times = [wall(dfm + cmd, cwd, env) for _ in range(args.repeat)]
            heavy = heavy_loaded(cmd, cwd, env)
            best, med = min(times), statistics.median(times)
            bad += [f"dfm {name}: {m}" for m in heavy]
            figures["commands"][name] = {"best_s": round(best, 4), "median_s": round(med, 4), "heavy": heavy}
            print(f"{name:<10}{best:>7.3f}s{med:>8.3f}s{best / floor:>8.1f}x  {', '.join(heavy) or '-'}")
        startup = figures["commands"]["preview"]["best_s"]
        verdict = "PASS" if startup < STARTUP_TARGET_S else "FAIL"
        print(f"\npreview start-up (tiny scene): {startup:.3f} s; target < {STARTUP_TARGET_S} s: {verdict}")

        fps_2d = preview_fps(MOTION_2D, args.size, 240)
        fps_3d = preview_fps(MOTION_3D, args.size, 60)
        end_to_end = min(wall(dfm + ["preview", "big.dfm", "-o", "big.mp4", "--quiet"], cwd, env) for _ in range(3))
    verdict = "PASS" if fps_2d >= FPS_TARGET else "FAIL"
    print(f"preview frames at {args.size}², 2D (in process): {fps_2d:7.1f} frames/s; target >= {FPS_TARGET:.0f}: "
          f"{verdict}")
    print(f"preview frames at {args.size}², 3D flat card (in process): {fps_3d:7.1f} frames/s")
    print(f"dfm preview, {args.frames} frames at {args.size}² end to end (start-up + frames + H.264): "
          f"{end_to_end:.2f} s = {args.frames / end_to_end:.1f} frames/s")
    figures.update(floor_s=round(floor, 4), preview_fps_2d=round(fps_2d, 1), preview_fps_3d=round(fps_3d, 1),
                   preview_end_to_end_s=round(end_to_end, 3), size=args.size, frames=args.frames)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    for b in bad:
        print(f"REGRESSION: {b} (only render may import the runtime's heavy modules)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
