"""Per-stage breakdown of dfm's frame loop at 512² with a full-size SD1.5 VAE and a tiny UNet (issue 14).

    .venv/bin/python benchmarks/bench_stages.py                 # 512², 4 frames, 2D, LAB colour coherence
    .venv/bin/python benchmarks/bench_stages.py --mode 3d       # the 3D warp (no depth model: z = 1)
    .venv/bin/python benchmarks/bench_stages.py --check         # make bench: small size, ratios checked

What a real render pays around the UNet: the VAE at full size (SD1.5's AutoencoderKL from dfm's shipped
config skeleton, random weights), the warp, colour coherence, contrast, unsharp mask, noise, the host copy
and PNG/H.264 writing, the checkpoints and the latents kept. The UNet is the test suite's tiny one (what it
costs is not what this measures; bench_gpu.py measures the real one on a GPU). On a CPU this is the proxy
for the GPU's per-frame overhead; the speed-up switches (runtime/speedups.py) can be turned on and off.

Prints ms per frame of every StageTimer stage (the writer thread's `write` included: it runs in parallel
with the next frame), the frame loop's wall time per frame, and two shares of that wall time:

- `non-UNet share`: everything but the `denoise` stage (here mostly the full-size VAE);
- `runtime share`: what is neither a model nor the writer: warp, effects, blend, video input
  and the untimed rest of the render thread (host copies, checkpoint snapshots, bookkeeping). This is the
  part dfm's own code decides, and the one `--check` bounds (a ratio, not a time: machine-independent).

It also prints the sha256 of the frames, so a refactor can be checked to leave the frames byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: offline, quiet model loading, tests/ importable)
import torch

# stages that are models (or model loading), the writer thread, or waits for it: not the runtime's own code
MODEL_STAGES = {"denoise", "encode", "decode", "depth", "load", "text", "compile"}
WRITER_STAGES = {"write", "write_wait", "write_queue_wait"}
CHECK_SIZE, CHECK_FRAMES = 256, 3
RUNTIME_SHARE_MAX = 0.25  # --check: the runtime's own share of the loop at CHECK_SIZE (measured 0.7 % on 2 CPU cores)


def scene(mode: str, size: int, frames: int, model: Path, steps: int) -> str:
    motion = {
        "2d": "angle 0:(0.5)\nzoom 0:(1.01)\ntranslation_x 0:(1)\nborder replicate\n",
        "3d": "translation_z 0:(2)\nrotation_3d_y 0:(0.5)\ntranslation_x 0:(1)\nuse_depth_warping off\n",
    }[mode]
    return (
        f"dfm 1\nmode {mode}\nsize {size}x{size}\nfps 30\nframes {frames}\ncadence 1\n"
        f'model "{model}"\nsampler euler\nsteps {steps}\nstrength 0.65\ncfg_scale 7.5\nseed 42\n'
        "color_coherence lab\nnoise 0:(0.02)\ncontrast 0:(1.01)\namount 0:(0.2)\n"
        'prompt 0 "a red cat"\nnegative "blurry"\n' + motion
    )


def build_model(folder: Path) -> Path:
    """The tiny pipeline of the test suite with SD1.5's full-size VAE (random weights, seeded) in place of
    its tiny one: latents are 4 × H/8 × W/8 as in a real SD1.5 render."""
    from diffusers import AutoencoderKL
    from tiny_models import build_pipeline

    from dfm.runtime.models import CONFIGS, quiet_loading

    if (folder / "model_index.json").is_file():
        return folder
    with quiet_loading():
        pipe = build_pipeline(folder.parent / "build")
        torch.manual_seed(5)
        pipe.vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(CONFIGS / "sd15" / "vae")))
        pipe.register_modules(vae=pipe.vae)
        pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def load(model_dir: Path, device: str, switches: dict):
    from dfm.runtime import speedups
    from dfm.runtime.device import pick_device
    from dfm.runtime.models import StableDiffusion, resolve_source

    placement = pick_device(device, dtype=switches.get("dtype", "auto"))
    sd = StableDiffusion(resolve_source(str(model_dir)), placement)
    sd.load()
    options = speedups.Speedups(**{k: v for k, v in switches.items() if k != "dtype"})
    applied = speedups.apply(sd, options)
    return sd, options, speedups.describe(options, placement.device.type, None) + f" ({applied.attention})"


def frames_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((folder / "frames").glob("*.png")):
        h.update(p.read_bytes())
    return h.hexdigest()


def measure(table, sd, out: Path, options=None) -> dict:
    from dfm.runtime.render import run_render
    from dfm.runtime.timing import StageTimer

    timer = StageTimer(sd.placement.device, sync=True)
    start = time.perf_counter()
    report = run_render(table, sd, out, timer=timer, restart=True, speed=options)
    wall = time.perf_counter() - start
    n = report.frames
    t = dict(report.timings)
    loop = wall - t.get("load", 0.0)  # the models are loaded before: what is left of "load" is a no-op
    timed_main = sum(v for k, v in t.items() if k not in WRITER_STAGES and k != "load")
    untimed = max(0.0, loop - timed_main - t.get("write_wait", 0.0) - t.get("write_queue_wait", 0.0))
    own = sum(v for k, v in t.items() if k not in MODEL_STAGES and k not in WRITER_STAGES) + untimed
    return {
        "frames": n,
        "loop_s": round(loop, 4),
        "ms_per_frame": round(1000 * loop / n, 2),
        "stages_ms_per_frame": {k: round(1000 * v / n, 2) for k, v in sorted(t.items()) if k != "load"},
        "untimed_ms_per_frame": round(1000 * untimed / n, 2),
        "non_unet_share": round(1 - t.get("denoise", 0.0) / loop, 4),
        "runtime_share": round(own / loop, 4),
        "unet_calls": report.unet_calls,
        "frames_sha256": frames_sha256(out),
    }


def print_result(res: dict) -> None:
    print(f"bench_stages: {res['mode']} {res['size']}², {res['frames']} frames, {res['steps']} steps; device "
          f"{res['device']} {res['dtype']}, {res['threads']} torch threads; switches {res['applied']}")
    for stage, ms in res["stages_ms_per_frame"].items():
        note = " (writer thread)" if stage in WRITER_STAGES else ""
        print(f"  {stage:<18}{ms:>10.1f} ms/frame{note}")
    print(f"  {'untimed':<18}{res['untimed_ms_per_frame']:>10.1f} ms/frame (render thread, outside any stage)")
    print(f"  {'frame loop':<18}{res['ms_per_frame']:>10.1f} ms/frame (wall)")
    print(f"non-UNet share {100 * res['non_unet_share']:.1f} %; runtime share {100 * res['runtime_share']:.1f} %; "
          f"UNet calls {res['unet_calls']}")
    print(f"frames sha256 {res['frames_sha256'][:16]}")


def _timed(fn, repeat: int) -> float:
    """Best of `repeat` calls, seconds (the first call of each configuration is not special-cased:
    configurations are measured in turn, so a one-off cost shows as a spread, not a bias)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_switches(sd, size: int, tile_size: int, repeat: int, compile_unet: bool) -> dict:
    """Each speed-up switch on and off, on the parts it changes: the VAE decode at `size` (attention,
    channels_last), the VAE decode at `tile_size` (tiling), and torch.compile's warm-up and per-call time on
    the tiny UNet. Each figure is seconds per call (best of `repeat`)."""
    from dfm.runtime import speedups

    dev = sd.placement.device
    out: dict = {}
    lat = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0)).to(dev)
    with torch.inference_mode():
        sd.decode_latents(lat)  # allocations and kernel choice, once
        for name, opts in (("default", speedups.Speedups()), ("attention_math", speedups.Speedups(attention="math")),
                           ("channels_last", speedups.Speedups(channels_last="on"))):
            speedups.apply(sd, opts)
            out[f"decode_{size}_{name}_s"] = round(_timed(lambda: sd.decode_latents(lat), repeat), 3)
        speedups.apply(sd, speedups.Speedups())
        big = torch.randn(1, 4, tile_size // 8, tile_size // 8, generator=torch.Generator().manual_seed(1)).to(dev)
        for name in ("off", "on"):
            speedups.apply(sd, speedups.Speedups(vae_tiling=name))
            out[f"decode_{tile_size}_tiling_{name}_s"] = round(_timed(lambda: sd.decode_latents(big), 1), 3)
        speedups.apply(sd, speedups.Speedups())
        if compile_unet:
            lat_u = torch.randn(2, 4, size // 8, size // 8).to(dev)
            emb = torch.cat([sd.encode_text("a red cat")] * 2)  # the layout the frame loop passes
            t = torch.tensor(500.0, device=dev)
            out["unet_eager_s"] = round(_timed(lambda: sd.unet(lat_u, t, encoder_hidden_states=emb), 5), 4)
            start = time.perf_counter()
            applied = speedups.apply(sd, speedups.Speedups(compile=True), size=(size, size), batches=(2,))
            out["unet_compile_warmup_s"] = round(time.perf_counter() - start, 2)
            out["unet_compile_warmup_reported_s"] = applied.compile_warmup_s
            out["unet_compiled_s"] = round(_timed(lambda: sd.unet(lat_u, t, encoder_hidden_states=emb), 5), 4)
            speedups.apply(sd, speedups.Speedups())
    return out


def main(argv: list[str] | None = None) -> int:
    from dfm.runtime import speedups

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("2d", "3d"), default="2d")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="write the result here too")
    ap.add_argument("--workdir", type=Path, help="keep the model here between runs (default: a temporary folder)")
    ap.add_argument("--check", action="store_true",
                    help=f"make bench: {CHECK_SIZE}², {CHECK_FRAMES} frames; exit 1 if the runtime share "
                         f"exceeds {RUNTIME_SHARE_MAX:.0%}%")  # %% : argparse formats help with %
    ap.add_argument("--switches", action="store_true",
                    help="instead of a render: each speed-up switch on and off (VAE decode at --switch-size, tiling "
                         "at --tile-size, torch.compile of the tiny UNet)")
    ap.add_argument("--switch-size", type=int, default=256)
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="with --switches: skip the torch.compile figures")
    speedups.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.check:
        args.size, args.frames = CHECK_SIZE, CHECK_FRAMES
    if not 64 <= args.size <= 2048 or args.size % 8 or not 2 <= args.frames <= 200:
        ap.error("--size must be a multiple of 8 in 64..2048 and --frames in 2..200")
    if args.threads:
        torch.set_num_threads(args.threads)
    switches = speedups.switches_from_args(args)

    with tempfile.TemporaryDirectory(prefix="dfm-bench-stages-") as tmp:
        work = args.workdir or Path(tmp)
        model_dir = build_model(work / "sd15-vae")
        sd, options, applied = load(model_dir, args.device, switches)
        if args.switches:
            res = measure_switches(sd, args.switch_size, args.tile_size, args.repeat, not args.no_compile)
            print(json.dumps(res, indent=1))
            if args.json:
                args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
            return 0
        from dfm.api import compile_text

        warm = compile_text(scene(args.mode, args.size, 2, model_dir, args.steps), "warm.dfm")
        measure(warm, sd, work / "warm", options)  # first-call costs (allocations, kernel choice) are not the loop's
        table = compile_text(scene(args.mode, args.size, args.frames, model_dir, args.steps), "bench.dfm")
        res = measure(table, sd, work / "render", options)
    res.update(mode=args.mode, size=args.size, steps=args.steps, device=str(sd.placement.device),
               dtype=str(sd.placement.dtype).removeprefix("torch."), threads=torch.get_num_threads(),
               applied=applied)
    print_result(res)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    if args.check and res["runtime_share"] > RUNTIME_SHARE_MAX:
        print(f"FAIL: runtime share {res['runtime_share']:.1%} > {RUNTIME_SHARE_MAX:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
