"""Batch benchmark: scenes per hour in one local process against Ray actors on the same machine.

Renders the same batch of small 2D scenes with the tiny random model of the test suite (built here,
offline): `dfm batch` without Ray (one process, one torch thread unless --local-threads), and on a local
Ray cluster with N CPU actors of one thread each; warm pools (model loaded), best of --repeat, and the
first batch counting Ray's start (cluster, actors, model loads). Then one stills scene split across the
actors (`dfm render --ray`) against a local render. Frames are checked against the local render byte
for byte. Not a test.

    .venv/bin/python benchmarks/bench_batch.py              # --scenes 8 --frames 12 --size 64 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: offline, quiet model loading, tests/ importable)
import torch
from tiny_models import save_model_forms

from dfm.api import compile_text
from dfm.runtime.render import render
from dfm.scaleout.batch import plan, run_batch
from dfm.scaleout.cluster import LocalPool, RayPool
from dfm.scaleout.shard import render_sharded

SCENE = """dfm 1
mode 2d
size {size}x{size}
fps 12
frames {frames}
steps {steps}
strength 0.5
seed {seed}
sampler euler
model "{model}"
prompt 0 "a cat"
prompt {half} "a dog"
zoom 0:(1.02)
angle 0:(1)
"""
STILLS = """dfm 1
mode none
size {size}x{size}
images_per_prompt {frames}
steps {steps}
seed 3
sampler euler
model "{model}"
prompt 0 "a cat"
"""


def same_frames(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in (a / "frames").iterdir())
    return names == sorted(p.name for p in (b / "frames").iterdir()) and all(
        (a / "frames" / n).read_bytes() == (b / "frames" / n).read_bytes() for n in names)


def line(what: str, seconds: float, scenes: int, frames: int) -> str:
    return (f"{what:<44} {seconds:7.1f} s  {scenes / seconds * 3600:8.0f} scenes/h  "
            f"{frames / seconds:6.2f} frames/s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each warm measurement; the best counts")
    ap.add_argument("--local-threads", type=lambda t: [int(x) for x in t.split(",")], default=[1],
                    help="torch threads of the local runs, e.g. 1,2 (default 1, as each Ray actor)")
    args = ap.parse_args(argv)

    import ray

    work = Path(tempfile.mkdtemp(prefix="dfm-bench-batch-"))
    model = save_model_forms(work / "models")["folder"]
    files = []
    for k in range(args.scenes):
        path = work / f"scene{k}.dfm"
        path.write_text(SCENE.format(size=args.size, frames=args.frames, steps=args.steps, seed=k, model=model,
                                     half=args.frames // 2), encoding="utf-8")
        files.append((str(path), path.read_text(encoding="utf-8")))
    frames = args.scenes * args.frames
    print(f"{args.scenes} scenes of {args.frames} frames, {args.size}x{args.size}, {args.steps} steps, 2D; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")

    def batch_seconds(pool, name: str) -> float:
        jobs = plan(files, [], work / name).jobs
        start = time.perf_counter()
        done = run_batch(jobs, pool)
        seconds = time.perf_counter() - start
        assert all(r.status == "done" for r in done), [r.outcome.error for r in done]
        return seconds

    # the first batch of a pool loads its model(s); the figures below are of warm pools, best of --repeat
    local = {}
    for threads in args.local_threads:
        torch.set_num_threads(threads)
        pool = LocalPool("cpu")
        cold = batch_seconds(pool, f"local{threads}-cold")
        local[threads] = min(batch_seconds(pool, f"local{threads}-{k}") for k in range(args.repeat))
        print(line(f"one process, {threads} torch thread{'s' * (threads != 1)}", local[threads], args.scenes, frames))
        print(f"{'  first batch (loads the model)':<44} {cold:7.1f} s")
    torch.set_num_threads(1)

    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, object_store_memory=100 * 1024**2,
             logging_level="error")
    try:
        with RayPool("local", device="cpu", workers=args.workers) as pool:
            up = time.perf_counter()
            cold = batch_seconds(pool, "ray-cold")
            warm = min(batch_seconds(pool, f"ray-{k}") for k in range(args.repeat))
            print(line(f"Ray, {args.workers} actors x 1 thread", warm, args.scenes, frames))
            print(line("  first batch, counting Ray's start", (up - start) + cold, args.scenes, frames))
            print(f"{'  of which Ray and the actors starting':<44} {up - start:7.1f} s")
            ref = work / f"local{args.local_threads[0]}-0"
            same = all(same_frames(work / "ray-0" / Path(p).stem, ref / Path(p).stem) for p, _ in files)
            print(f"Ray's frames equal the local render's ({args.local_threads[0]} thread): {same}")

            stills = compile_text(STILLS.format(size=args.size, frames=4 * args.frames, steps=args.steps,
                                                model=model), str(work / "stills.dfm"))
            local_s, ray_s = [], []
            for k in range(args.repeat):
                t = time.perf_counter()
                render(stills, work / f"stills-local{k}", device="cpu")
                local_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                render_sharded(stills, work / f"stills-ray{k}", pool)
                ray_s.append(time.perf_counter() - t)
            n = len(stills)
            print(f"stills, {n} frames: one process {n / min(local_s):.2f} frames/s, split across {args.workers} "
                  f"actors {n / min(ray_s):.2f} frames/s; "
                  f"equal: {same_frames(work / 'stills-ray0', work / 'stills-local0')}")
    finally:
        ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.1f} at the end; outputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
