"""Few-step benchmark: frames/s and UNet calls per frame, SD1.5 at 25 steps against SDXL-Turbo and LCM at 4.

    .venv/bin/python benchmarks/bench_fewstep.py              # a CUDA GPU: full-size random weights
    .venv/bin/python benchmarks/bench_fewstep.py --cpu-smoke  # the test suite's tiny models on the CPU (< 60 s)

The same 2D scene (zoom and turn, strength 0.65, cadence 1, Deforum's defaults otherwise) three ways:

- **sd15-25**: an SD1.5-shaped model, euler, 25 steps, cfg 7.5 (CFG: the unconditional pass batched with the
  conditional one), so each img2img frame runs int((1 - 0.65) × 25) = 8 steps;
- **sdxl-turbo-4**: an SDXL-Turbo-shaped model (SDXL's UNet and both text encoders from runtime/configs/sdxl,
  SDXL-Turbo's trailing EulerAncestral scheduler), 512², the family's defaults: euler_a_trailing, 4 steps,
  cfg 0 (no unconditional pass), so each img2img frame runs int(0.35 × 4) = 1 step;
- **lcm-4**: an SD1.5-shaped UNet with LCM_Dreamshaper_v7's guidance embedding (time_cond_proj_dim 256) and
  LCMScheduler: lcm, 4 steps, cfg 8 embedded in the UNet (no unconditional pass): 1 step per img2img frame.

The models are built with random weights (bench_gpu.py's SD1.5 builder, the SDXL and LCM ones here, from
dfm's shipped config skeletons), saved and loaded through dfm's loaders, warmed up, then rendered by
dfm's `run_render`. Reported per run: frames/s, UNet calls per frame (dfm's count; it must equal Σ
effective_steps over the diffused rows), batch items per call (2 with CFG), and the family dfm detected.
Random weights: the figures are about time, not images. Not yet run on a GPU (none was lent when it was
written); the CPU figures are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _common  # noqa: F401  - offline, quiet, tests/ importable: before torch
import torch
from bench_gpu import build_sd15, compile_scene, environment, expected_unet_calls, run_dfm, write_clip_sized_tokenizer

ROOT = _common.ROOT
RUNS = {  # name -> (model kind, sampler, steps, cfg)
    "sd15-25": ("sd15", "euler", 25, 7.5),
    "sdxl-turbo-4": ("sdxl-turbo", "euler_a_trailing", 4, 0.0),
    "lcm-4": ("lcm", "lcm", 4, 8.0),
}
# SDXL-Turbo's scheduler_config.json (stabilityai/sdxl-turbo): what makes the folder a turbo model to dfm
TURBO_SCHEDULER = {"_class_name": "EulerAncestralDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                   "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                   "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": None}
LCM_COND_DIM = 256  # LCM_Dreamshaper_v7's unet/config.json time_cond_proj_dim


def scene(model: Path, size: int, frames: int, sampler: str, steps: int, cfg: float) -> str:
    return (f'dfm 1\nmode 2d\nsize {size}x{size}\nfps 15\nframes {frames}\ncadence 1\nmodel "{model}"\n'
            f"sampler {sampler}\nsteps {steps}\ncfg_scale {cfg}\nstrength 0:(0.65)\nseed 7\n"
            'prompt 0 "a lighthouse on a cliff at dawn"\nnegative "blurry"\nzoom 0:(1.01)\nangle 0:(0.3)\n')


# ---- models -----------------------------------------------------------------------------------------------


def _save(pipe, folder: Path, scheduler: dict | None = None) -> Path:
    pipe.save_pretrained(str(folder), safe_serialization=True)
    if scheduler is not None:
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler), encoding="utf-8")
    return folder


def tiny_models(root: Path) -> dict[str, Path]:
    """The test suite's tiny SD 1.x and SDXL pipelines, and the tiny SD one with an LCM UNet."""
    from diffusers import LCMScheduler, UNet2DConditionModel
    from sdxl_models import build_sdxl_pipeline
    from tiny_models import TINY_UNET, build_pipeline

    sd = build_pipeline(root / "build")
    out = {"sd15": _save(sd, root / "sd15"), "sdxl-turbo": _save(build_sdxl_pipeline(root / "build-xl"),
                                                                 root / "sdxl-turbo", TURBO_SCHEDULER)}
    torch.manual_seed(5)
    sd.unet = UNet2DConditionModel(**TINY_UNET, cross_attention_dim=8, time_cond_proj_dim=32)
    sd.scheduler = LCMScheduler.from_config(sd.scheduler.config)
    out["lcm"] = _save(sd, root / "lcm")
    return out


def full_models(root: Path, device: torch.device, dtype: torch.dtype) -> dict[str, Path]:
    """Full-size random models: SD1.5 (bench_gpu's builder), SDXL-Turbo (SDXL's shapes, 2.6 B UNet), and
    SD1.5 with an LCM UNet; each saved in `dtype`, the modules created on `device` (fast on a GPU)."""
    from diffusers import (
        AutoencoderKL,
        LCMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from dfm.runtime.models import CONFIGS

    out = {"sd15": build_sd15(root / "sd15", root / "build", device, dtype)}
    xl = CONFIGS / "sdxl"
    tok = CLIPTokenizer.from_pretrained(str(write_clip_sized_tokenizer(root / "build" / "tok")), model_max_length=77)
    # SDXL's second tokenizer: CLIP's vocabulary, padding with "!" (its shipped tokenizer_config.json says so)
    tok2 = CLIPTokenizer.from_pretrained(str(root / "build" / "tok"), model_max_length=77, pad_token="!")
    torch.manual_seed(0)
    with device:
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(xl / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(xl / "vae")))
        te1 = CLIPTextModel(CLIPTextConfig.from_json_file(str(xl / "text_encoder" / "config.json")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_json_file(str(xl / "text_encoder_2" / "config.json")))
    from diffusers import EulerAncestralDiscreteScheduler

    pipe = StableDiffusionXLPipeline(vae=vae.to(dtype), text_encoder=te1.to(dtype), text_encoder_2=te2.to(dtype),
                                     tokenizer=tok, tokenizer_2=tok2, unet=unet.to(dtype),
                                     scheduler=EulerAncestralDiscreteScheduler.from_config(TURBO_SCHEDULER))
    out["sdxl-turbo"] = _save(pipe, root / "sdxl-turbo", TURBO_SCHEDULER)
    del pipe, unet, vae, te1, te2
    base = StableDiffusionPipeline.from_pretrained(str(out["sd15"]), torch_dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False)
    torch.manual_seed(1)
    with device:
        config = UNet2DConditionModel.load_config(str(CONFIGS / "sd15" / "unet"))
        config = {**config, "time_cond_proj_dim": LCM_COND_DIM}
        base.unet = UNet2DConditionModel.from_config(config).to(dtype)
    base.scheduler = LCMScheduler.from_config(base.scheduler.config)
    out["lcm"] = _save(base, root / "lcm")
    return out


# ---- the benchmark ------------------------------------------------------------------------------------------


def benchmark(full: bool, device_spec: str, work: Path, frames: int) -> dict:
    from dfm.contract import families
    from dfm.runtime.device import pick_device
    from dfm.runtime.models import StableDiffusion, quiet_loading, resolve_source

    placement = pick_device(device_spec)
    dev, dtype = placement.device, placement.dtype
    size = 512 if full else 64
    began = time.perf_counter()
    with quiet_loading():
        folders = full_models(work, dev, dtype) if full else tiny_models(work)
    built = time.perf_counter() - began
    runs = {}
    for name, (kind, sampler, steps, cfg) in RUNS.items():
        folder = folders[kind]
        sd = StableDiffusion(resolve_source(str(folder)), placement)
        with quiet_loading():
            sd.load()
        fam = families.folder_family(folder)
        run_dfm(f"warm-{name}", compile_scene(scene(folder, size, 2, sampler, steps, cfg)), sd, None, work / "out")
        table = compile_scene(scene(folder, size, frames, sampler, steps, cfg))
        sd.unet_calls = 0
        batches: list[int] = []  # the batch of every UNet call: 2 with CFG, 1 without

        def count(_module, args, batches=batches) -> None:
            batches.append(int(args[0].shape[0]))

        hook = sd.unet.register_forward_pre_hook(count)
        try:
            res = run_dfm(name, table, sd, None, work / "out")
        finally:
            hook.remove()
        runs[name] = {
            "family": fam.name, "guidance_embedded": sd.guidance_embedded, "sampler": sampler, "steps": steps,
            "cfg_scale": cfg, "size": size, "frames": res["frames"], "fps": res["fps"], "wall_s": res["wall_s"],
            "unet_calls": res["unet_calls"], "expected_unet_calls": expected_unet_calls(table),
            "unet_calls_per_frame": round(res["unet_calls"] / res["frames"], 3),
            "batch_per_call": round(sum(batches) / max(1, len(batches)), 3),
            "per_frame_ms": res["per_frame_ms"],
        }
        del sd
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {"benchmark": "bench_fewstep", "full_shapes": full, "environment": environment(dev),
            "build_s": round(built, 2), "runs": runs, "total_s": round(time.perf_counter() - began, 2)}


def print_table(result: dict) -> None:
    env = result["environment"]
    where = env.get("gpu", f"CPU ({env['cpus']} cores, {env['torch_threads']} torch threads)")
    print(f"bench_fewstep: {'full' if result['full_shapes'] else 'tiny'} shapes on {where}; torch {env['torch']}, "
          f"diffusers {env['diffusers']}")
    print(f"\n{'run':<14}{'family':<12}{'sampler':<18}{'steps':>6}{'cfg':>5}{'frames':>7}{'f/s':>9}"
          f"{'UNet calls/frame':>18}{'batch/call':>11}{'vs sd15-25':>11}")
    base = result["runs"]["sd15-25"]["fps"]
    for name, r in result["runs"].items():
        exact = "" if r["unet_calls"] == r["expected_unet_calls"] else " MISMATCH"
        print(f"{name:<14}{r['family']:<12}{r['sampler']:<18}{r['steps']:>6}{r['cfg_scale']:>5g}{r['frames']:>7}"
              f"{r['fps']:>9.2f}{r['unet_calls_per_frame']:>18.2f}{r['batch_per_call']:>11.2f}"
              f"{r['fps'] / base:>10.2f}x{exact}")
    print(f"\nbuild {result['build_s']:.1f} s, total {result['total_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU (the default without CUDA)")
    ap.add_argument("--device", default="auto", help="auto (cuda when there is one), cuda, cuda:N, cpu")
    ap.add_argument("--frames", type=int, help="frames per run (default 30 full, 8 smoke)")
    ap.add_argument("--json", type=Path, help="where to write the results (default outputs/bench-fewstep[-cpu].json)")
    ap.add_argument("--workdir", type=Path, help="build models and renders here (default: a temporary folder)")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke or (args.device == "auto" and not torch.cuda.is_available())
    device = "cpu" if smoke and args.device == "auto" else args.device
    frames = args.frames or (8 if smoke else 30)
    if not 2 <= frames <= 10_000:
        ap.error("--frames must be in 2 .. 10000")
    if smoke:
        torch.set_num_threads(1)  # tiny tensors gain nothing from threads, and lose when cores are busy
    with _common.workdir(args.workdir, "dfm-bench-fewstep-") as work:
        result = benchmark(not smoke, device, work, frames)
    path = _common.write_json(args.json or ROOT / "outputs" / ("bench-fewstep-cpu.json" if smoke
                                                                else "bench-fewstep.json"), result)
    print_table(result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
