"""bench_gpu's ControlNet case: what one unit costs a 2D render (issue 22).

A random-weight ControlNet of the benchmark model's own UNet (full shapes: SD1.5-sized, about 360 M
parameters, made on the device from `controlnet.controlnet_config`), saved as a diffusers folder and loaded
by dfm's loader; one unit (module none, a 512² noise image as the control, weight 1, the whole window,
balanced) on the 2D scene, rendered with and without the unit. Records frames/s both ways, the ControlNet's
time per frame (the difference), its calls (one per UNet call: every step is in the window) and peak VRAM.
Run by `bench_gpu.py` on full shapes (a GPU); `--controlnet` adds it to a --cpu-smoke run, which `make test`
never asks for.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

COND_WIDTHS = (16, 32, 96, 256)  # real ControlNets' control-image embedding: three halvings (SD's VAE: 8x)


def build_controlnet(sd, folder: Path) -> Path:
    """A ControlNet of `sd`'s UNet with random weights, saved in the placement's dtype. Its image embedding
    halves as often as the VAE does (the tiny VAE of --cpu-smoke once, SD's three times)."""
    from diffusers import ControlNetModel

    from dfm.runtime.controlnet import controlnet_config

    if (folder / "config.json").is_file():
        return folder
    config = controlnet_config(sd.unet)
    config["conditioning_embedding_out_channels"] = list(COND_WIDTHS[: int(math.log2(sd.latent_scale)) + 1])
    torch.manual_seed(22)
    with sd.placement.device:
        net = ControlNetModel.from_config(config)
    net.to(sd.placement.dtype).save_pretrained(str(folder), safe_serialization=True)
    del net
    return folder


def with_unit(table, model: Path, image: Path):
    """`table` with one ControlNet unit as the compiler hands it over (contract/controlnet.py)."""
    from dfm.contract.controlnet import column

    n = len(table)
    settings = {"controlnet_units": (1,), column(1, "model"): str(model), column(1, "module"): "none",
                column(1, "vid_path"): str(image), column(1, "mask_vid_path"): None,
                column(1, "loopback_mode"): False, column(1, "processor_res"): 512, column(1, "threshold_a"): None,
                column(1, "threshold_b"): None, column(1, "resize_mode"): "just_resize",
                column(1, "control_mode"): "balanced", column(1, "pixel_perfect"): False}
    cols = {column(1, "weight"): np.ones(n), column(1, "guidance_start"): np.zeros(n),
            column(1, "guidance_end"): np.ones(n)}
    return table.with_settings(**settings).with_columns(**cols)


def controlnet_case(plan, sd, table_of, out: Path, work: Path, run_dfm) -> dict:
    """The 2D scene (plan.switch_frames frames) rendered without and with one unit: frames/s, the ControlNet's
    ms per frame, its calls and the UNet's, peak VRAM. `table_of(frames)` compiles the scene; `run_dfm` is
    bench_gpu's timed render."""
    import time

    from PIL import Image

    t = time.perf_counter()
    model = build_controlnet(sd, work / "models" / f"controlnet-{sd.placement.dtype}".replace("torch.", ""))
    build_s = time.perf_counter() - t
    image = work / "control.png"
    size = plan.size
    Image.fromarray(np.random.default_rng(22).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(image)
    plain = table_of(plan.switch_frames)
    table = with_unit(plain, model, image)
    run_dfm("controlnet-warm", with_unit(table_of(2), model, image), sd, None, out)  # the load and first calls
    loaded = sd.controlnets[str(model)]
    calls = []
    handle = loaded.net.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with_cn = run_dfm("controlnet", table, sd, None, out)
    finally:
        handle.remove()
    without = run_dfm("controlnet-plain", plain, sd, None, out)
    frames = with_cn["frames"]
    return {
        "frames": frames,
        "controlnet_parameters": sum(p.numel() for p in loaded.net.parameters()),
        "build_s": round(build_s, 3),
        "fps_with": with_cn["fps"],
        "fps_without": without["fps"],
        "ratio": round(with_cn["fps"] / without["fps"], 4),
        "controlnet_ms_per_frame": round(1000 * (with_cn["wall_s"] - without["wall_s"]) / frames, 3),
        "controlnet_calls": len(calls),
        "unet_calls": with_cn["unet_calls"],
        "calls_match": len(calls) == with_cn["unet_calls"],  # the whole window: one ControlNet call per UNet call
        "per_frame_ms": with_cn["per_frame_ms"],
        "per_frame_ms_without": without["per_frame_ms"],
        "peak_vram_bytes": with_cn["peak_vram_bytes"],
        "peak_vram_bytes_without": without["peak_vram_bytes"],
    }


def print_case(case: dict) -> None:
    vram = (f", peak VRAM {case['peak_vram_bytes'] / 1e9:.2f} GB (without {case['peak_vram_bytes_without'] / 1e9:.2f})"
            if case["peak_vram_bytes"] else "")
    print(f"\ncontrolnet ({case['frames']}-frame 2D render, one unit, {case['controlnet_parameters'] / 1e6:.0f} M "
          f"parameters): {case['fps_with']:.3f} f/s with, {case['fps_without']:.3f} without ({case['ratio']:.2f}x); "
          f"{case['controlnet_ms_per_frame']:.1f} ms/frame; ControlNet calls {case['controlnet_calls']} "
          f"(UNet {case['unet_calls']}){vram}")
