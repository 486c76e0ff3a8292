"""The cost per frame of each optical-flow method at 512x512 (runtime/flow.py), on this machine's CPU.

    .venv/bin/python benchmarks/bench_flow.py [--size 512] [--repeat 5]

One flow is what optical-flow cadence pays per tween frame under a moving camera, hybrid motion per
frame, and redo generation per diffused frame (runtime/frame.py). The frames are a smooth random texture
and the same texture moved 3 px right and 2 px down; each method runs once to warm up, then `--repeat`
times, and the median is printed with the mean error against that known motion (interior only). Also the
cost of warping a frame along a flow (`warp_by_flow`, the tween's two warps) and of the forward-backward
consistency mask. RAFT runs only if its weights file is in the torch hub cache (`raft_weights_path()`),
else the line says skipped: a benchmark never downloads. `--raft-random` times RAFT with randomly
initialised weights instead (the cost does not depend on the weights; the error is then meaningless).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common  # noqa: F401 - offline environment and tests/ on the path, before torch
import cv2
import numpy as np
import torch
from _common import median_seconds

from dfm.runtime import flow as fl

MOTION = (3.0, 2.0)  # (dx, dy) pixels between the two frames


def frames(size: int) -> tuple[np.ndarray, np.ndarray]:
    pad = 16
    noise = np.random.default_rng(0).random((size + 2 * pad, size + 2 * pad, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 3.0)
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 255).round().astype(np.uint8)
    dx, dy = int(MOTION[0]), int(MOTION[1])
    return tex[pad:pad + size, pad:pad + size], tex[pad - dy:pad - dy + size, pad - dx:pad - dx + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--raft-random", action="store_true", help="time RAFT with random weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dfm-bench-flow-") as tmp:
        run(args, Path(tmp) / "raft_random.pth" if args.raft_random else None)


def raft_weights(random_path: Path | None) -> Path | None:
    """The RAFT weights to time: the real ones if present, else random ones saved at `random_path`."""
    if fl.raft_weights_path().is_file():
        return fl.raft_weights_path()
    if random_path is None:
        return None
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    torch.save(raft_large(weights=None, progress=False).state_dict(), random_path)
    return random_path


def run(args: argparse.Namespace, random_path: Path | None) -> None:
    a, b = frames(args.size)
    border = args.size // 8
    print(f"optical flow at {args.size}x{args.size}, median of {args.repeat}, CPU threads: torch "
          f"{torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}")
    print(f"{'method':<12} {'ms/frame':>9}  mean flow error (px)")
    weights = raft_weights(random_path)
    for method in fl.FLOW_METHODS:
        if method == "raft" and weights is None:
            print(f"{method:<12} {'skipped':>9}  no weights at {fl.raft_weights_path()} (--raft-random times it)")
            continue
        label = "raft (random)" if method == "raft" and weights == random_path else method
        seconds = median_seconds(lambda m=method: fl.estimate_flow(a, b, m, raft_weights=weights), args.repeat)
        flow = fl.estimate_flow(a, b, method, raft_weights=weights)[border:-border, border:-border]
        error = np.abs(flow.reshape(-1, 2).mean(axis=0) - np.array(MOTION)).max()
        print(f"{label:<12} {seconds * 1000:9.1f}  {error:.3f}")
    image = torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    flow = fl.estimate_flow(a, b, "dis_medium")
    back = fl.estimate_flow(b, a, "dis_medium")
    print(f"{'warp':<12} {median_seconds(lambda: fl.warp_by_flow(image, flow, 0.5), args.repeat) * 1000:9.1f}"
          "  (warp_by_flow, grid_sample on the CPU)")
    print(f"{'consistency':<12} {median_seconds(lambda: fl.consistency_mask(flow, back, 2), args.repeat) * 1000:9.1f}"
          "  (consistency_mask, blur 2)")


if __name__ == "__main__":
    main()
