"""The frames of every example, rendered small with the test suite's tiny random models, as sha256 sums.

A refactor of the render path must not change a byte: run this before and after and compare.

    python benchmarks/example_hashes.py -o before.json
    ... change ...
    python benchmarks/example_hashes.py --compare before.json

Each scene is rendered through the command line (`dfm render`, as a user runs it) at 64x64 with its
first FRAMES frames, every other statement as written; 3D scenes get the tiny DPT depth model. The
figures are the sha256 of each frame, the video and the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _common  # noqa: F401  (offline, tests/ on the path; before torch)

ROOT = _common.ROOT
FRAMES = 16
DROPPED = re.compile(r"^\s*(size|frames|max_frames|duration)\b.*$", re.MULTILINE)


def small_scene(text: str) -> str:
    """The scene at 64x64 with FRAMES frames: its size and length statements replaced."""
    return DROPPED.sub("", text) + f"\nsize 64x64\nframes {FRAMES}\n"


def build_models(work: Path) -> tuple[Path, Path]:
    from tiny_models import build_pipeline, save_depth_models

    sd = work / "sd"
    if not (sd / "model_index.json").is_file():
        build_pipeline(work).save_pretrained(str(sd))
    depth = save_depth_models(work / "depth")["dpt"]
    return sd, depth


def render_examples(work: Path) -> dict[str, dict[str, str]]:
    sd, depth = build_models(work)
    scenes = work / "scenes"
    shutil.rmtree(scenes, ignore_errors=True)
    scenes.mkdir()
    for p in (ROOT / "examples").iterdir():
        if p.suffix != ".dfm":
            shutil.copy(p, scenes / p.name)  # the videos and the soundtrack the scenes name
    sums: dict[str, dict[str, str]] = {}
    for src in sorted((ROOT / "examples").glob("*.dfm")):
        scene = scenes / src.name
        scene.write_text(small_scene(src.read_text(encoding="utf-8")), encoding="utf-8")
        out = work / "out" / src.stem
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "dfm", "render", str(scene), "--out", str(out), "--model", str(sd),
               "--depth-model", str(depth), "--device", "cpu"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sums[src.stem] = {"error": (done.stdout + done.stderr).strip()[-400:]}
            print(f"{src.stem}: render failed\n{sums[src.stem]['error']}", file=sys.stderr)
            continue
        files = sorted(out.glob("frames/*.png")) + sorted(out.glob("depth/*.png"))
        files += [p for p in (out / "video.mp4", out / "table.csv") if p.is_file()]
        sums[src.stem] = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        print(f"{src.stem}: {len(files)} files", file=sys.stderr)
    return sums


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, help="write the sums here (JSON)")
    ap.add_argument("--compare", type=Path, help="compare with sums written before; exit 1 if any differs")
    ap.add_argument("--workdir", type=Path, help="build models and renders here (kept)")
    args = ap.parse_args()
    with _common.workdir(args.workdir, "dfm-example-hashes-") as work:
        work.mkdir(parents=True, exist_ok=True)
        sums = render_examples(work)
    if args.output:
        _common.write_json(args.output, sums)
    if args.compare:
        before = json.loads(args.compare.read_text(encoding="utf-8"))
        differ = sorted(k for k in before.keys() | sums.keys() if before.get(k) != sums.get(k))
        for k in differ:
            old, new = before.get(k, {}), sums.get(k, {})
            files = sorted(f for f in old.keys() | new.keys() if old.get(f) != new.get(f))
            print(f"{k}: differs in {', '.join(files[:6])}{' …' if len(files) > 6 else ''}")
        same = len(sums) - len(differ)
        print(f"{same}/{len(sums)} examples byte-identical ({sum(len(v) for v in sums.values())} files)")
        return 1 if differ else 0
    print(json.dumps({k: len(v) for k, v in sums.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
