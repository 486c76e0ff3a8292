"""Frames per second of `dfm upscale` (runtime/upscale.py's `upscale_frame`) on 512x512 frames, on this machine.

    .venv/bin/python benchmarks/bench_upscale.py [--size 512] [--repeat 3] [--device auto] [--models tiny-2x,...]
                                                 [--tile 512] [--threads N]

Random weights (the cost does not depend on them; no file is downloaded), saved as .safetensors and
loaded through `load_upscaler` like a user's model, so the figures include spandrel's wrapper (padding,
clamping) and the uint8 conversions, not the PNG encoding. The models:

- tiny-2x, tiny-4x: ESRGAN (RRDBNet) with 8 filters and 1 block, the test suite's size: the overhead floor;
- compact-2x: Real-ESRGAN Compact (SRVGG), 64 filters, 16 convolutions (realesr-animevideov3's shape);
- compact-4x: Compact, 64 filters, 32 convolutions (realesr-general-x4v3's shape);
- esrgan-4x: ESRGAN, 64 filters, 23 blocks (RealESRGAN_x4plus / 4x-UltraSharp's shape): the heavy classic.

Each model runs once to warm up, then `--repeat` times (esrgan-4x: once, it takes minutes on a CPU); the
median is printed, with the process's peak resident memory so far (the models run smallest first, so
on the CPU it is about the last one's; on a GPU, the peak GPU memory of that model).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import _common  # noqa: F401 - offline environment, before torch
import numpy as np
import torch
from _common import median_seconds

from dfm.runtime.upscale import DEFAULT_OVERLAP, load_upscaler, upscale_frame


def esrgan(scale: int, filters: int, blocks: int) -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(in_nc=3, out_nc=3, num_filters=filters, num_blocks=blocks, scale=scale)


def compact(scale: int, filters: int, convs: int) -> torch.nn.Module:
    from spandrel.architectures.Compact import Compact

    return Compact(num_in_ch=3, num_out_ch=3, num_feat=filters, num_conv=convs, upscale=scale)


MODELS = {
    "tiny-2x": lambda: esrgan(2, 8, 1),
    "tiny-4x": lambda: esrgan(4, 8, 1),
    "compact-2x": lambda: compact(2, 64, 16),
    "compact-4x": lambda: compact(4, 64, 32),
    "esrgan-4x": lambda: esrgan(4, 64, 23),
}
SLOW = {"esrgan-4x"}


def save(name: str, folder: Path) -> Path:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in MODELS[name]().state_dict().items()}, path)
    return path


def peak_gib(device: torch.device) -> float:
    """Peak GPU memory of the model just run (reset for the next), or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        return peak / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=512, help="0: whole frames")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frame = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    tile = args.tile or None
    print(f"{args.size}x{args.size} frames, tile {tile or 'none'} (overlap {DEFAULT_OVERLAP}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory(prefix="dfm-bench-upscale-") as tmp:
        for name in args.models.split(","):
            model = load_upscaler(save(name, Path(tmp)), device=args.device)
            sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

            def once(model=model, sync=sync) -> None:
                upscale_frame(model, frame, tile)
                sync()

            seconds = median_seconds(once, 1 if name in SLOW else args.repeat)
            params = sum(p.numel() for p in model.descriptor.model.parameters())
            print(f"{name:11s} {model.name:32s} {params / 1e6:6.2f} M params  {model.device}/{str(model.dtype)[6:]}"
                  f"  {seconds:8.3f} s/frame  {1 / seconds:8.3f} frames/s  peak {peak_gib(model.device):5.2f} GiB",
                  flush=True)


if __name__ == "__main__":
    main()
