"""Render benchmark: dfm's frame loop against a naive loop over diffusers' img2img pipeline.

Runs on the tiny random model of the test suite (built here, offline), so it measures the loop's
overhead and the stage split, not a real model's speed. Prints a per-stage breakdown (warp, effects,
text, encode, denoise, decode, write), frames per second, the UNet-only floor and the ratios.
Not a test.

    .venv/bin/python benchmarks/bench_render.py            # --frames 24 --size 64 --steps 10 --strength 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: offline, quiet model loading, tests/ importable)
import cv2
import numpy as np
import torch
from tiny_models import make_table, save_model_forms

from dfm.runtime.device import pick_device
from dfm.runtime.models import StableDiffusion, quiet_loading, resolve_source
from dfm.runtime.render import run_render
from dfm.runtime.timing import StageTimer
from dfm.runtime.warp import matrix_2d


def bench_dfm(table, model_dir: Path, out: Path, device: str):
    sd = StableDiffusion(resolve_source(str(model_dir)), pick_device(device))
    timer = StageTimer(sd.placement.device, sync=True)
    start = time.perf_counter()
    report = run_render(table, sd, out, timer=timer)
    return time.perf_counter() - start, report


def bench_naive(table, model_dir: Path, out: Path, device: str) -> tuple[float, dict[str, float]]:
    """What a straightforward script does: the pipelines per frame, cv2 warp on the host, PIL in and out,
    prompt encoded every frame, PNG written synchronously."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    from PIL import Image

    with quiet_loading():
        t2i = StableDiffusionPipeline.from_pretrained(
            str(model_dir), safety_checker=None, requires_safety_checker=False, local_files_only=True
        ).to(device)
    t2i.scheduler = EulerDiscreteScheduler.from_config(t2i.scheduler.config, timestep_spacing="linspace")
    i2i = StableDiffusionImg2ImgPipeline(**t2i.components)
    for p in (t2i, i2i):
        p.set_progress_bar_config(disable=True)
    out.mkdir(parents=True, exist_ok=True)
    s = table.settings
    stages = {"warp": 0.0, "pipeline": 0.0, "write": 0.0}
    start = time.perf_counter()
    image = None
    for i in range(len(table)):
        row = table.row(i)
        gen = torch.Generator(device).manual_seed(int(row["seed"]))
        if image is None:
            t = time.perf_counter()
            image = t2i(
                row["prompt"],
                negative_prompt=row["negative_prompt"],
                num_inference_steps=int(row["steps"]),
                guidance_scale=float(row["cfg_scale"]),
                height=s.height,
                width=s.width,
                generator=gen,
            ).images[0]
            stages["pipeline"] += time.perf_counter() - t
        else:
            t = time.perf_counter()
            arr = np.asarray(image)
            arr = cv2.warpPerspective(
                arr, matrix_2d(row, s.width, s.height), (s.width, s.height), borderMode=cv2.BORDER_REPLICATE
            )
            stages["warp"] += time.perf_counter() - t
            t = time.perf_counter()
            image = i2i(
                row["prompt"],
                negative_prompt=row["negative_prompt"],
                image=Image.fromarray(arr),
                strength=1 - float(row["strength"]),
                num_inference_steps=int(row["steps"]),
                guidance_scale=float(row["cfg_scale"]),
                generator=gen,
            ).images[0]
            stages["pipeline"] += time.perf_counter() - t
        t = time.perf_counter()
        image.save(out / f"{i:05d}.png")
        stages["write"] += time.perf_counter() - t
    return time.perf_counter() - start, stages


def bench_unet_floor(model_dir: Path, table, device: str, calls: int) -> float:
    """The UNet alone, for as many CFG-batched calls as the dfm render made: the loop's lower bound."""
    sd = StableDiffusion(resolve_source(str(model_dir)), pick_device(device))
    s = table.settings
    lat = torch.randn(2, 4, s.height // sd.latent_scale, s.width // sd.latent_scale, device=sd.placement.device)
    emb = torch.cat([sd.encode_text("a red cat"), sd.encode_text("")])
    t = torch.tensor(500.0, device=sd.placement.device)
    sd.eps(lat, t, emb)  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        sd.eps(lat, t, emb)
    if sd.placement.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--cadence", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="dfm-bench-") as tmp:
        root = Path(tmp)
        with quiet_loading():
            model = save_model_forms(root / "models")["folder"]
        table = make_table(
            args.frames,
            size=(args.size, args.size),
            steps=args.steps,
            strength=args.strength,
            cadence=args.cadence,
            angle=1.0,
            zoom=1.01,
            noise=0.02,
            save_video=True,
            color_coherence="lab",
            amount=0.2,
            model=str(model),
        )
        # warm both paths once (first-call costs of torch kernels and imports are not the loop's)
        warm = make_table(2, size=(args.size, args.size), steps=2, model=str(model))
        bench_dfm(warm, model, root / "warm", args.device)
        bench_naive(warm, model, root / "warm-naive", args.device)

        dfm_s, report = bench_dfm(table, model, root / "dfm", args.device)
        naive_s, naive_stages = bench_naive(table, model, root / "naive", args.device)
        floor_s = bench_unet_floor(model, table, args.device, report.unet_calls)

    n = args.frames
    print(
        f"scene: {n} frames {args.size}x{args.size}, {args.steps} steps, strength {args.strength}, "
        f"cadence {args.cadence}, euler, CFG; tiny random model on {report.device} ({torch.get_num_threads()} "
        "torch threads)"
    )
    print(f"UNet calls: {report.unet_calls}, text encoder calls: {report.text_encoder_calls}")
    print(f"\ndfm render:   {dfm_s:7.3f} s  ({n / dfm_s:6.1f} frames/s; writes PNGs and video.mp4)")
    order = ["load", "text", "warp", "effects", "encode", "denoise", "decode", "blend", "write_wait"]
    for stage in order + sorted(set(report.timings) - set(order)):
        if stage in report.timings:
            sec = report.timings[stage]
            print(f"  {stage:18s} {sec:7.3f} s  {100 * sec / dfm_s:5.1f} %")
    print("  (write = time on the writer thread, overlapped with rendering; write_queue_wait = time the")
    print("   render thread waited for it; write_wait = draining the queue and finishing the video)")
    print(f"\nnaive loop:   {naive_s:7.3f} s  ({n / naive_s:6.1f} frames/s; img2img pipeline per frame, PNGs only)")
    for stage, sec in naive_stages.items():
        print(f"  {stage:18s} {sec:7.3f} s  {100 * sec / naive_s:5.1f} %")
    print(f"\nUNet-only floor ({report.unet_calls} calls): {floor_s:7.3f} s")
    print(f"\nspeed-up dfm / naive: {naive_s / dfm_s:5.2f}x")
    print(f"dfm time over the UNet floor: {dfm_s / floor_s:5.2f}x")


if __name__ == "__main__":
    main()
