"""Interpolated frames per second of each engine of `dfm interpolate` at 512x512 (runtime/interpolate.py).

    .venv/bin/python benchmarks/bench_interpolate.py [--size 512] [--pairs 4] [--times 2] [--device cpu] [--threads N]
        [--rife flownet.pkl] [--film film_net_fp16.pt]

The clip is a smooth random texture moving 3 px right and 2 px down per frame; each engine interpolates
`--pairs` pairs once to warm up, then again timed; the figure is new (in-between) frames per second, the
engine's cost alone (no PNG or video encoding). Without a weights file RIFE runs its v4.6 architecture with
random weights and FILM a stand-in TorchScript module of FILM's interface (a cross-fade, so its figure is
the loader's and the padding's overhead, not FILM's network): the lines say so. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - offline environment, before torch
import cv2
import numpy as np
import torch

from dfm.runtime import interpolate as ip


def clip(size: int, count: int) -> list[np.ndarray]:
    pad = 4 * count + 16
    noise = np.random.default_rng(0).random((size + 2 * pad, size + 2 * pad, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 3.0)
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 255).round().astype(np.uint8)
    return [np.ascontiguousarray(tex[pad - 2 * i:pad - 2 * i + size, pad - 3 * i:pad - 3 * i + size])
            for i in range(count)]


class Crossfade(torch.nn.Module):
    """FILM's call, model(x0, x1, dt), as a cross-fade: a stand-in when no FILM weights are at hand."""

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return x0 + (x1 - x0) * dt.view(-1, 1, 1, 1)


def new_frames_per_second(engine: ip.Engine, frames: list[np.ndarray], times: int) -> float:
    list(ip.interpolate(frames[:2], times, engine))  # warm-up: thread pools, first allocations
    start = time.perf_counter()
    out = list(ip.interpolate(frames, times, engine))
    seconds = time.perf_counter() - start
    return (len(out) - len(frames)) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--times", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); on a busy "
                        "2-core machine 1 is faster, since spinning threads wait on each other")
    parser.add_argument("--rife", type=Path, help="Practical-RIFE v4.6 flownet.pkl (default: random weights)")
    parser.add_argument("--film", type=Path, help="FILM's film_net_fp16.pt (default: a cross-fade stand-in)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = clip(args.size, args.pairs + 1)
    print(f"{args.size}x{args.size}, {args.pairs} pairs, --times {args.times}, device {args.device}, "
          f"{torch.get_num_threads()} torch threads")
    with tempfile.TemporaryDirectory(prefix="dfm-bench-interpolate-") as tmp:
        rife, film = args.rife, args.film
        if rife is None:
            torch.manual_seed(0)
            rife = Path(tmp) / "flownet.pkl"
            torch.save(ip.IFNet().state_dict(), rife)
        if film is None:
            film = Path(tmp) / "film.pt"
            torch.jit.save(torch.jit.script(Crossfade()), str(film))
        for name, weights, said in (("flow", None, ""),
                                    ("rife", rife, "" if args.rife else " (random weights)"),
                                    ("film", film, "" if args.film else " (cross-fade stand-in, not FILM)")):
            engine = ip.load_engine(name, weights, args.device)
            fps = new_frames_per_second(engine, frames, args.times)
            print(f"{name:5s} {fps:8.2f} new frames/s  {1000 / fps:8.1f} ms per frame{said}")


if __name__ == "__main__":
    main()
