"""GPU benchmark: dfm's render against a naive diffusers img2img loop, SD1.5-sized, 512², fp16 (issue 14).

    .venv/bin/python benchmarks/bench_gpu.py                # a CUDA machine; needs no internet, no weights
    .venv/bin/python benchmarks/bench_gpu.py --cpu-smoke    # tiny shapes on the CPU (the default without CUDA)
    make bench-gpu

Builds the models itself with random weights, saves them and loads them back through dfm's own loaders:
an SD1.5-shaped pipeline from the config skeleton dfm ships (runtime/configs/sd15: UNet 860 M, VAE, CLIP
ViT-L text encoder; the tokenizer is a byte-level vocabulary padded to CLIP's 49,408 tokens, since the
real one is not shipped) and a DPT-Hybrid-shaped depth model (transformers' DPTForDepthEstimation with
Intel/dpt-hybrid-midas's architecture, dfm's default depth_model), saved to a folder and loaded by
runtime/depth.py. With `--cpu-smoke` the models are the test suite's tiny ones (tests/tiny_models.py).

Then, with the models loaded once and warmed up:

- **2d**: dfm renders a 2D scene (default 60 frames, 50 steps, strength 0.65, cadence 1, euler, CFG 7.5,
  LAB colour coherence, noise, PNGs + video.mp4), and a naive loop renders the same frames: a user's
  script over diffusers' StableDiffusionImg2ImgPipeline (txt2img for frame 0, then per frame: cv2 warp of
  the previous PIL image on the CPU, pipe(image=prev, strength=1 - strength), PNG saved), sharing dfm's
  loaded modules so both run the same weights;
- **3d**: dfm renders a 3D scene with depth warping (one depth prediction per frame);
- **2d_4step**: both again with 4 steps, strength 0.5 and no CFG (turbo-shaped: 2 UNet calls a frame);
- **controlnet** (full shapes, or `--controlnet`): the 2D scene with and without one ControlNet unit, a random
  SD1.5-sized ControlNet built from the UNet's config (bench_controlnet.py).

- **flux** and **sd3** (full shapes on a GPU, or `--flow`): a Flux.1-dev-shaped (12 B transformer) and an
  SD3.5-Large-shaped (8 B MMDiT) random-weight model at 1024², bf16, each rendering a 2D scene through dfm
  with its family's defaults (flow_euler, 28 steps, cfg 3.5: Flux embeds it, SD3 runs CFG), strength 0.65.
  Their T5 is T5-XXL's width with 2 of its 24 layers (it runs once per distinct prompt, not per step).
  Frames/s, per-stage time, transformer calls (exact), the per-call floor and overhead, peak VRAM.

For each it records frames/s both ways and the ratio, dfm's per-stage time per frame (its own StageTimer,
synchronised with the GPU at stage boundaries: RenderReport.timings), the UNet calls (dfm's count, which
must equal Σ effective_steps over the diffused rows, and the naive loop's, counted by a hook), the UNet-only
floor (a measured time per UNet call × the calls) and from it the runtime overhead (all non-UNet time),
peak VRAM (torch.cuda.max_memory_allocated, models included), and the environment. Then the speed-up
switches (runtime/speedups.py), each flipped once from the options given (`--dtype`, `--attention`,
`--channels-last`, `--vae-tiling`, `--compile`, as `dfm render` takes them) on a short 2D render, and the
VAE decode at 1024² with tiling off and on (time and peak VRAM); `--ablate-compile` adds a compiled UNet
(its warm-up reported apart), `--no-switches` skips them. Writes one JSON file and prints a table.
Targets (full shapes on a GPU only): overhead ≤ 3 %, dfm ≥ 1.5× naive frames/s, peak
VRAM ≤ 5 GB with the depth model, UNet calls exact. Estimated 3-5 minutes on one H100-class GPU (not
yet measured: no GPU was lent when it was written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import _common  # first: offline, quiet model loading, tests/ (the tiny model builders of --cpu-smoke) importable
from _common import ROOT

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLIP_VOCAB = 49408  # CLIP ViT-L/14's vocabulary: the text encoder config's vocab_size
TARGETS = {"overhead_max": 0.03, "speedup_min": 1.5, "peak_vram_max_gb": 5.0}
MAIN_THREAD_SKIP = {"write", "load"}  # "write" runs on the writer thread; models are loaded before the runs


@dataclass(frozen=True)
class Plan:
    """The sizes of one benchmark run (full: the issue's figures; smoke: seconds on a CPU)."""

    shapes: str  # "full" (SD1.5-sized) or "tiny" (the test suite's)
    size: int
    frames: int
    steps: int
    strength: float
    cfg: float
    turbo_frames: int
    turbo_steps: int
    turbo_strength: float
    floor_calls: int  # UNet calls timed for the per-call floor
    switch_frames: int = 12  # frames of each speed-up ablation run (the 2D scene, --steps steps)
    tile_size: int = 1024  # the VAE decode measured with tiling on and off


FULL = Plan("full", 512, 60, 50, 0.65, 7.5, 60, 4, 0.5, 20, 12, 1024)
SMOKE = Plan("tiny", 64, 5, 4, 0.5, 7.5, 3, 4, 0.5, 5, 2, 128)


# ---- scenes -------------------------------------------------------------------------------------------------


def scene_text(mode: str, plan: Plan, model: Path, depth: Path | None, *, frames: int, steps: int,
               strength: float, cfg: float) -> str:
    motion = {
        "2d": "angle 0:(0.5)\nzoom 0:(1.01)\ntranslation_x 0:(1)\nborder replicate\n",
        "3d": "translation_z 0:(2)\nrotation_3d_y 0:(0.5)\ntranslation_x 0:(1)\n"
              f'use_depth_warping on\ndepth_model "{depth}"\n',
    }[mode]
    return (
        f"dfm 1\nmode {mode}\nsize {plan.size}x{plan.size}\nfps 30\nframes {frames}\ncadence 1\n"
        f'model "{model}"\nsampler euler\nsteps {steps}\nstrength {strength}\ncfg_scale {cfg}\nseed 42\n'
        "color_coherence lab\nnoise 0:(0.02)\n"
        'prompt 0 "a sports car on the beach, golden hour"\nnegative "blurry, low quality"\n' + motion
    )


def compile_scene(text: str):
    from dfm.api import compile_text

    return compile_text(text, "bench.dfm")


# ---- models ---------------------------------------------------------------------------------------------------


def write_clip_sized_tokenizer(folder: Path) -> Path:
    """A byte-level BPE tokenizer (any text tokenizes) padded with unused entries to CLIP's 49,408 tokens,
    the specials at CLIP's ids 49406/49407: the text encoder's embedding table is then used at full size,
    and dfm's broken-tokenizer check (a vocabulary far smaller than the encoder's) is satisfied."""
    from tiny_models import byte_symbols

    folder.mkdir(parents=True, exist_ok=True)
    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += [f"<|unused{i}|>" for i in range(CLIP_VOCAB - 2 - len(vocab))]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def build_sd15(folder: Path, work: Path, device: torch.device, dtype: torch.dtype) -> Path:
    """An SD1.5-shaped diffusers folder with random weights, from dfm's shipped config skeleton. The modules
    are created on `device` (fast random init on a GPU) and saved in `dtype`."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from dfm.runtime.models import CONFIGS

    skeleton = CONFIGS / "sd15"
    tokenizer = CLIPTokenizer.from_pretrained(str(write_clip_sized_tokenizer(work / "tokenizer")),
                                              model_max_length=77)
    torch.manual_seed(0)
    with device:
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(skeleton / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(skeleton / "vae")))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_json_file(str(skeleton / "text_encoder" / "config.json")))
    scheduler = PNDMScheduler.from_config(PNDMScheduler.load_config(str(skeleton / "scheduler")))
    pipe = StableDiffusionPipeline(
        unet=unet.to(dtype), vae=vae.to(dtype), text_encoder=text_encoder.to(dtype), tokenizer=tokenizer,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, unet, vae, text_encoder
    return folder


def build_dpt_hybrid(folder: Path, device: torch.device, dtype: torch.dtype) -> Path:
    """A DPT with Intel/dpt-hybrid-midas's architecture (ViT-B/16 on a BiT-ResNet stem, 384² input; dfm's
    default depth_model), random weights, saved as transformers saves the hub model."""
    from transformers import BitConfig, DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        image_size=384, patch_size=16, is_hybrid=True, backbone_out_indices=[2, 5, 8, 11],
        neck_hidden_sizes=[256, 512, 768, 768], fusion_hidden_size=256, readout_type="project",
        backbone_featmap_shape=[1, 1024, 24, 24], neck_ignore_stages=[0, 1], head_in_index=-1,
        backbone_config=BitConfig(global_padding="same", layer_type="bottleneck", depths=[3, 4, 9],
                                  out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True),
    )
    torch.manual_seed(3)
    with device:
        model = DPTForDepthEstimation(config)
    model.to(dtype).save_pretrained(str(folder))
    DPTImageProcessor(do_resize=True, size={"height": 384, "width": 384}, keep_aspect_ratio=False,
                      ensure_multiple_of=1, do_normalize=True, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(str(folder))
    del model
    return folder


def build_models(plan: Plan, root: Path, device: torch.device, dtype: torch.dtype) -> tuple[Path, Path]:
    """(diffusers folder, depth model folder), built and saved under `root` (kept from an earlier run with
    the same --workdir)."""
    from dfm.runtime.models import quiet_loading

    done = root / f"{plan.shapes}.json"
    if done.is_file():
        sd, depth = json.loads(done.read_text(encoding="utf-8"))
        return Path(sd), Path(depth)
    with quiet_loading():
        if plan.shapes == "tiny":
            from tiny_models import build_pipeline, save_depth_models

            folder = root / "sd"
            build_pipeline(root / "build").save_pretrained(str(folder), safe_serialization=True)
            folders = folder, save_depth_models(root / "depth")["dpt"]
        else:
            folders = (build_sd15(root / "sd15", root / "build", device, dtype),
                       build_dpt_hybrid(root / "dpt-hybrid", device, dtype))
    done.write_text(json.dumps([str(f) for f in folders]), encoding="utf-8")
    return folders


# ---- rectified-flow models (SD3 / Flux) -------------------------------------------------------------------------

FLOW_STEPS, FLOW_CFG, FLOW_STRENGTH = 28, 3.5, 0.65  # FLUX.1-dev's and SD3.5 Large's defaults; Deforum's strength
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_heads=64, feed_forward_proj="gated-gelu")


def _flow_vae(full: bool, shift: float, scale: float):
    from diffusers import AutoencoderKL

    if not full:
        from tiny_flow_models import tiny_flow_vae

        return tiny_flow_vae()
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                         up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                         layers_per_block=2, latent_channels=16, norm_num_groups=32, sample_size=1024,
                         scaling_factor=scale, shift_factor=shift, use_quant_conv=False, use_post_quant_conv=False)


def build_flow(kind: str, folder: Path, work: Path, device: torch.device, dtype: torch.dtype, full: bool) -> Path:
    """A Flux.1-dev-shaped ("flux") or SD3.5-Large-shaped ("sd3") diffusers folder with random weights, made on
    `device` and saved in `dtype`; tiny shapes: tests/tiny_flow_models.py's pipelines."""
    import tiny_flow_models as tf

    if not full:
        pipe = tf.build_flux_pipeline(work) if kind == "flux" else tf.build_sd3_pipeline(work)
        pipe.save_pretrained(str(folder), safe_serialization=True)
        return folder
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        T5Config,
        T5EncoderModel,
    )

    tok = CLIPTokenizer.from_pretrained(str(write_clip_sized_tokenizer(work / "tokenizer")), model_max_length=77)
    clip_l = dict(vocab_size=CLIP_VOCAB, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
    clip_g = dict(clip_l, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                  hidden_act="gelu", projection_dim=1280)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # random init straight in bf16: a 12 B model never exists in fp32
    try:
        with device:
            t5 = T5EncoderModel(T5Config(num_layers=2, **T5_XXL))
            if kind == "flux":
                transformer = FluxTransformer2DModel(
                    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                    guidance_embeds=True, axes_dims_rope=(16, 56, 56))
                pipe = FluxPipeline(
                    transformer=transformer, vae=_flow_vae(True, 0.1159, 0.3611),
                    text_encoder=CLIPTextModel(CLIPTextConfig(**clip_l)), tokenizer=tok, text_encoder_2=t5,
                    tokenizer_2=tf.t5_tokenizer(),
                    scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                              max_shift=1.15, base_image_seq_len=256,
                                                              max_image_seq_len=4096))
            else:
                transformer = SD3Transformer2DModel(
                    sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64,
                    num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432,
                    pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192, qk_norm="rms_norm")
                pipe = StableDiffusion3Pipeline(
                    transformer=transformer, vae=_flow_vae(True, 0.0609, 1.5305),
                    text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**clip_l)), tokenizer=tok,
                    text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**clip_g)), tokenizer_2=tok,
                    text_encoder_3=t5, tokenizer_3=tf.t5_tokenizer(),
                    scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    finally:
        torch.set_default_dtype(default)
    pipe.save_pretrained(str(folder), safe_serialization=True, max_shard_size="10GB")
    del pipe, transformer, t5
    return folder


def flow_scene(model: Path, size: int, frames: int, steps: int) -> str:
    return (f'dfm 1\nmode 2d\nsize {size}x{size}\nfps 30\nframes {frames}\ncadence 1\nmodel "{model}"\n'
            f"sampler flow_euler\nsteps {steps}\nstrength {FLOW_STRENGTH}\ncfg_scale {FLOW_CFG}\nseed 42\n"
            "color_coherence lab\nnoise 0:(0.02)\nangle 0:(0.5)\nzoom 0:(1.01)\ntranslation_x 0:(1)\n"
            'prompt 0 "a sports car on the beach, golden hour"\nnegative "blurry, low quality"\n')


def flow_seconds_per_call(sd, size: int, batch: int, calls: int) -> float:
    """The transformer alone: one velocity call on a frame's latents (a batch of 2 with SD3's CFG)."""
    from dfm.runtime.prompts import PromptEncoder

    dev = sd.placement.device
    cond = sd.flow_cond(PromptEncoder(sd)('[["",1.0]]'))
    if batch > 1:
        cond = type(cond)(torch.cat([cond.embeds] * batch), torch.cat([cond.pooled] * batch))
    h = size // sd.latent_scale
    x = torch.zeros(batch, sd.latent_channels, h, h, device=dev)
    t = torch.tensor(500.0, device=dev)
    with torch.inference_mode():
        sd.velocity(x, t, cond, FLOW_CFG)
        sync(dev)
        start = time.perf_counter()
        for _ in range(calls):
            sd.velocity(x, t, cond, FLOW_CFG)
        sync(dev)
    return (time.perf_counter() - start) / calls


def flow_case(kind: str, plan: Plan, device_spec: str, work: Path) -> dict:
    """One rectified-flow model built, loaded by dfm and timed on a 2D scene (see the module docstring)."""
    from dfm.runtime.device import pick_device
    from dfm.runtime.models import StableDiffusion, quiet_loading, resolve_source

    full = plan.shapes == "full"
    placement = pick_device(device_spec, "bf16" if full else "fp32")
    dev = placement.device
    size, frames, steps = (1024, 8, FLOW_STEPS) if full else (64, 3, 4)
    phases = {}
    t = time.perf_counter()
    with quiet_loading():
        folder = build_flow(kind, work / kind, work / f"build_{kind}", dev, placement.dtype, full)
    _common.release_memory(dev)
    phases["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sd = StableDiffusion(resolve_source(str(folder)), placement)
    sd.load()
    phases["load_s"] = time.perf_counter() - t
    loaded = allocated_bytes(dev)
    table = compile_scene(flow_scene(folder, size, frames, steps))
    run_dfm(f"{kind}_warm", compile_scene(flow_scene(folder, size, 1, 2)), sd, None, work / "renders")
    t = time.perf_counter()
    dfm = run_dfm(kind, table, sd, None, work / "renders")
    phases["run_s"] = time.perf_counter() - t
    batch = 2 if kind == "sd3" and FLOW_CFG > 1 else 1
    per_call = flow_seconds_per_call(sd, size, batch, plan.floor_calls)
    floor = per_call * dfm["unet_calls"]
    wall = dfm["frames"] / dfm["fps"]
    shutil.rmtree(work / "renders", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)  # tens of GB: the next model needs the disk
    family = sd.model_family.name
    del sd
    _common.release_memory(dev)
    return {"family": family, "size": size, "frames": frames, "steps": steps, "strength": FLOW_STRENGTH,
            "cfg": FLOW_CFG, "dtype": str(placement.dtype).replace("torch.", ""), "dfm": dfm,
            "unet_calls_exact": dfm["unet_calls"] == dfm["expected_unet_calls"],
            "transformer_ms_per_call": round(1000 * per_call, 3),
            "overhead": round(max(0.0, 1 - floor / wall), 4), "models_vram_bytes": loaded,
            "phases_s": {k: round(v, 3) for k, v in phases.items()}}


# ---- measuring --------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def allocated_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None


def expected_unet_calls(table) -> int:
    """Σ effective_steps over the diffused rows: one (CFG-batched) UNet call per step run."""
    diffused = np.asarray(table["diffused"], dtype=bool)
    return int(np.asarray(table["effective_steps"])[diffused].sum())


def run_dfm(name: str, table, sd, depth, out: Path, speed=None) -> dict:
    from dfm.runtime import speedups
    from dfm.runtime.render import run_render
    from dfm.runtime.timing import StageTimer

    dev = sd.placement.device
    timer = StageTimer(dev, sync=True)
    reset_peak(dev)
    start = time.perf_counter()
    report = run_render(table, sd, out / name, timer=timer, depth=depth, restart=True, speed=speed)
    sync(dev)
    wall = time.perf_counter() - start
    n = report.frames
    timings = dict(report.timings)
    main_thread = sum(v for k, v in timings.items() if k not in MAIN_THREAD_SKIP and k != "compile")
    return {
        "frames": n,
        "wall_s": round(wall, 4),
        "fps": round(n / wall, 4),
        "timings_s": timings,
        "per_frame_ms": {k: round(1000 * v / n, 3) for k, v in timings.items()},
        "untimed_per_frame_ms": round(1000 * max(0.0, wall - main_thread) / n, 3),
        "unet_calls": report.unet_calls,
        "expected_unet_calls": expected_unet_calls(table),
        "text_encoder_calls": report.text_encoder_calls,
        "depth_calls": report.depth_calls,
        "peak_vram_bytes": peak_bytes(dev),
        "device": report.device,
        "dtype": report.dtype,
        "speedups": speedups.recorded(sd),
    }


def ablations(plan: Plan, sd, table_of, out: Path, base, with_compile: bool) -> dict:
    """Each speed-up switch flipped from `base` on a short 2D render (plan.switch_frames frames), the
    same scene each time: frames/s and per-stage time per frame; and the VAE decode at plan.tile_size with
    tiling off and on (seconds, peak VRAM). torch.compile (its warm-up apart) only `with_compile`."""
    from dataclasses import replace as change

    from dfm.runtime import speedups

    dev = sd.placement.device
    tab = table_of(plan.switch_frames)
    flips = {
        "base": base,
        "attention=" + ("math" if base.attention == "sdpa" else "sdpa"):
            change(base, attention="math" if base.attention == "sdpa" else "sdpa"),
        "channels_last=" + ("off" if speedups.resolve_channels_last(base.channels_last, dev.type) else "on"):
            change(base, channels_last="off" if speedups.resolve_channels_last(base.channels_last, dev.type)
                   else "on"),
    }
    if with_compile and not base.compile:
        flips["compile=on"] = change(base, compile=True)
    res: dict = {}
    for name, opts in flips.items():
        r = run_dfm(f"switch-{name}", tab, sd, None, out, speed=opts)
        res[name] = {"speedups": r["speedups"], "fps": r["fps"], "per_frame_ms": r["per_frame_ms"],
                     "compile_warmup_s": r["timings_s"].get("compile", 0.0), "peak_vram_bytes": r["peak_vram_bytes"]}
        shutil.rmtree(out / f"switch-{name}", ignore_errors=True)
    base_fps = res["base"]["fps"]
    for r in res.values():
        r["vs_base"] = round(r["fps"] / base_fps, 4)
    speedups.apply(sd, base)
    lat = torch.randn(1, int(sd.vae.config.latent_channels), plan.tile_size // sd.latent_scale,
                      plan.tile_size // sd.latent_scale, generator=torch.Generator().manual_seed(0)).to(dev)
    tiling = {}
    with torch.inference_mode():
        for mode in ("off", "on"):
            speedups.apply(sd, change(base, vae_tiling=mode))
            sd.decode_latents(lat)  # kernel choice for this shape
            reset_peak(dev)
            start = time.perf_counter()
            sd.decode_latents(lat)
            sync(dev)
            tiling[mode] = {"decode_s": round(time.perf_counter() - start, 4), "peak_vram_bytes": peak_bytes(dev)}
    speedups.apply(sd, base)
    return {"frames": plan.switch_frames, "runs": res, "vae_tiling": {"size": plan.tile_size, **tiling}}


def naive_pipelines(sd):
    """A user's pipelines over dfm's already loaded modules (same weights, same device and dtype)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    scheduler = EulerDiscreteScheduler.from_config(sd.scheduler_config, timestep_spacing="linspace")
    t2i = StableDiffusionPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                  scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                  image_encoder=None, requires_safety_checker=False)
    i2i = StableDiffusionImg2ImgPipeline(**t2i.components)
    for p in (t2i, i2i):
        p.set_progress_bar_config(disable=True)
    return t2i, i2i


def run_naive(name: str, table, sd, pipes, out: Path) -> dict:
    """The straightforward script: a pipeline call per frame, cv2 warp of the previous image on the host,
    the prompt encoded every frame, PNG written synchronously."""
    import cv2
    from PIL import Image

    from dfm.runtime.camera import matrix_2d

    t2i, i2i = pipes
    dev = sd.placement.device
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    s = table.settings
    calls = [0]
    hook = sd.unet.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    stages = {"warp": 0.0, "pipeline": 0.0, "write": 0.0}
    reset_peak(dev)
    start = time.perf_counter()
    try:
        image = None
        for i in range(len(table)):
            row = table.row(i)
            gen = torch.Generator(dev).manual_seed(int(row["seed"]))
            common = {"negative_prompt": row["negative_prompt"], "num_inference_steps": int(row["steps"]),
                      "guidance_scale": float(row["cfg_scale"]), "generator": gen}
            if image is None:
                t = time.perf_counter()
                image = t2i(row["prompt"], height=s.height, width=s.width, **common).images[0]
                stages["pipeline"] += time.perf_counter() - t
            else:
                t = time.perf_counter()
                arr = cv2.warpPerspective(np.asarray(image), matrix_2d(row, s.width, s.height), (s.width, s.height),
                                          borderMode=cv2.BORDER_REPLICATE)
                stages["warp"] += time.perf_counter() - t
                t = time.perf_counter()
                strength = 1 - float(row["strength"])
                if int(int(row["steps"]) * strength) < 1:  # diffusers would return an empty batch: keep the frame
                    image = Image.fromarray(arr)
                else:
                    image = i2i(row["prompt"], image=Image.fromarray(arr), strength=strength, **common).images[0]
                stages["pipeline"] += time.perf_counter() - t
            t = time.perf_counter()
            image.save(folder / f"{i:05d}.png")
            stages["write"] += time.perf_counter() - t
        sync(dev)
    finally:
        hook.remove()
    wall = time.perf_counter() - start
    n = len(table)
    return {"frames": n, "wall_s": round(wall, 4), "fps": round(n / wall, 4), "unet_calls": calls[0],
            "per_frame_ms": {k: round(1000 * v / n, 3) for k, v in stages.items()},
            "peak_vram_bytes": peak_bytes(dev)}


@torch.no_grad()
def unet_seconds_per_call(sd, size: int, batch: int, calls: int) -> float:
    """The UNet alone at this size and batch (2 with CFG), after a warm-up: the loop's lower bound."""
    dev, dtype = sd.placement.device, sd.placement.dtype
    scale = sd.latent_scale
    lat = torch.randn(batch, int(sd.unet.config.in_channels), size // scale, size // scale, device=dev, dtype=dtype)
    emb = torch.cat([sd.encode_text("a sports car"), sd.encode_text("")][:batch]).to(dtype)
    t = torch.tensor(500.0, device=dev)
    for _ in range(3):
        sd.unet(lat, t, encoder_hidden_states=emb)
    sync(dev)
    start = time.perf_counter()
    for _ in range(calls):
        sd.unet(lat, t, encoder_hidden_states=emb)
    sync(dev)
    return (time.perf_counter() - start) / calls


@torch.no_grad()
def outputs_finite(sd) -> bool:
    """Random weights in fp16 could overflow; a NaN frame would still time the same, but say so."""
    dev = sd.placement.device
    frame = torch.rand(1, 3, 64, 64, device=dev)
    lat = sd.encode_image(frame)
    emb = sd.encode_text("a sports car")
    eps = sd.unet(lat.to(sd.placement.dtype), torch.tensor(500.0, device=dev),
                  encoder_hidden_states=emb.to(sd.placement.dtype)).sample
    image = sd.decode_latents(lat)
    return bool(torch.isfinite(lat).all() and torch.isfinite(eps).all() and torch.isfinite(image).all())


def environment(device: torch.device) -> dict:
    import diffusers
    import transformers

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            env["commit"] = rev.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    return env


# ---- the benchmark -----------------------------------------------------------------------------------------------


def warm_up(plan: Plan, table_of, sd, depth, pipes, out: Path, speed) -> None:
    """Two-frame runs of each mode (and the naive loop) before any timed one."""
    for mode, cfg in (("2d", plan.cfg), ("3d", plan.cfg), ("2d", 1.0)):
        warm = table_of(mode, frames=2, steps=2, strength=0.5, cfg=cfg)
        run_dfm(f"warm-{mode}-{cfg}", warm, sd, depth, out, speed=speed)
        if mode == "2d":
            run_naive(f"warm-naive-{cfg}", warm, sd, pipes, out)


def measure(name: str, tab, plan: Plan, sd, depth, pipes, out: Path, speed) -> dict:
    """One table's figures: dfm's run, the naive loop's (2D only), and the UNet floor they are held to."""
    guided = float(tab.row(0)["cfg_scale"]) != 1.0
    res: dict = {"scene": {"mode": tab.settings.mode, "frames": len(tab), "size": plan.size,
                           "steps": int(tab.row(0)["steps"]), "strength": float(tab.row(0)["strength"]),
                           "cfg_scale": float(tab.row(0)["cfg_scale"]), "cadence": int(tab.settings.cadence),
                           "sampler": tab.settings.sampler}}
    res["dfm"] = run_dfm(name, tab, sd, depth, out, speed=speed)
    if name != "3d":  # a user's 3D loop needs a depth warp of their own: not benchmarked
        res["naive"] = run_naive(f"{name}-naive", tab, sd, pipes, out)
        res["speedup"] = round(res["dfm"]["fps"] / res["naive"]["fps"], 4)
    per_call = unet_seconds_per_call(sd, plan.size, 2 if guided else 1, plan.floor_calls)
    floor = per_call * res["dfm"]["unet_calls"]
    res["unet_ms_per_call"] = round(1000 * per_call, 4)
    res["unet_floor_s"] = round(floor, 4)
    res["overhead"] = round(max(0.0, 1 - floor / res["dfm"]["wall_s"]), 4)
    res["unet_calls_exact"] = res["dfm"]["unet_calls"] == res["dfm"]["expected_unet_calls"]
    return res


def benchmark(plan: Plan, device_spec: str, work: Path, *, dtype: str = "auto", speed=None,
              ablate: bool = True, ablate_compile: bool = False, controlnet: bool = False) -> dict:
    from dfm.runtime import speedups
    from dfm.runtime.device import pick_device
    from dfm.runtime.models import StableDiffusion, resolve_source
    from dfm.runtime.render import resolve_depth

    began = time.perf_counter()
    speed = speed or speedups.Speedups()
    placement = pick_device(device_spec, dtype)
    dev = placement.device
    phases: dict[str, float] = {}

    t = time.perf_counter()
    model_dir, depth_dir = build_models(plan, work / "models", dev, placement.dtype)
    _common.release_memory(dev)  # the built modules are saved and gone: only what dfm loads counts in VRAM
    phases["build_models_s"] = time.perf_counter() - t

    t = time.perf_counter()
    sd = StableDiffusion(resolve_source(str(model_dir)), placement)
    sd.load()
    phases["load_sd_s"] = time.perf_counter() - t
    applied = speedups.apply(sd, speed)  # the attention processors found (SDPA expected), before any run
    models_bytes = {"sd": allocated_bytes(dev)}
    finite = outputs_finite(sd)

    def table(mode: str, **kw):
        return compile_scene(scene_text(mode, plan, model_dir, depth_dir if mode == "3d" else None, **kw))

    full = {"frames": plan.frames, "steps": plan.steps, "strength": plan.strength, "cfg": plan.cfg}
    turbo = {"frames": plan.turbo_frames, "steps": plan.turbo_steps, "strength": plan.turbo_strength, "cfg": 1.0}
    tables = {"2d": table("2d", **full), "3d": table("3d", **full), "2d_4step": table("2d", **turbo)}
    t = time.perf_counter()
    depth = resolve_depth(tables["3d"].settings, placement, override=str(depth_dir), scene_path="",
                          allow_pickle=False)
    depth.load()
    phases["load_depth_s"] = time.perf_counter() - t
    models_bytes["sd+depth"] = allocated_bytes(dev)

    out = work / "renders"
    pipes = naive_pipelines(sd)
    t = time.perf_counter()  # first-call costs (kernel selection, lazy imports) are not the loop's
    warm_up(plan, table, sd, depth, pipes, out, speed)
    phases["warm_up_s"] = time.perf_counter() - t

    runs: dict[str, dict] = {}
    for name, tab in tables.items():
        t = time.perf_counter()
        runs[name] = measure(name, tab, plan, sd, depth if name == "3d" else None, pipes, out, speed)
        phases[f"run_{name}_s"] = time.perf_counter() - t
        shutil.rmtree(out / name, ignore_errors=True)

    switches = None
    if ablate:
        t = time.perf_counter()
        switches = ablations(plan, sd, lambda n: table("2d", frames=n, steps=plan.steps, strength=plan.strength,
                                                       cfg=plan.cfg), out, speed, ablate_compile)
        phases["switches_s"] = time.perf_counter() - t

    cn_case = None
    if controlnet:  # one ControlNet unit on the 2D scene (bench_controlnet.py)
        import bench_controlnet

        t = time.perf_counter()
        cn_case = bench_controlnet.controlnet_case(plan, sd, lambda n: table("2d", frames=n, steps=plan.steps,
                                                   strength=plan.strength, cfg=plan.cfg), out, work, run_dfm)
        phases["controlnet_s"] = time.perf_counter() - t

    phases["total_s"] = time.perf_counter() - began
    return {
        "speedups": {"options": asdict(speed), "dtype_option": dtype, "applied": speedups.recorded(sd),
                     "attention_processors": applied.attention},
        "switches": switches,
        "controlnet": cn_case,
        "benchmark": "bench_gpu",
        "plan": asdict(plan),
        "meaningful": plan.shapes == "full" and dev.type == "cuda",  # the targets apply to full shapes on a GPU
        "targets": TARGETS,
        "environment": environment(dev),
        "model_outputs_finite": finite,
        "models_vram_bytes": models_bytes,
        "runs": runs,
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
    }


def verdicts(result: dict) -> dict[str, bool]:
    runs = result["runs"]
    gb = [r["dfm"]["peak_vram_bytes"] for r in runs.values() if r["dfm"]["peak_vram_bytes"] is not None]
    out = {
        "unet_calls_exact": all(r["unet_calls_exact"] for r in runs.values()),
        "overhead": all(r["overhead"] <= TARGETS["overhead_max"] for r in runs.values()),
        "speedup": all(r["speedup"] >= TARGETS["speedup_min"] for r in runs.values() if "speedup" in r),
    }
    if gb:
        out["peak_vram"] = max(gb) / 1e9 <= TARGETS["peak_vram_max_gb"]
    return out


def print_table(result: dict) -> None:
    env = result["environment"]
    where = env.get("gpu", f"CPU ({env['cpus']} cores, {env['torch_threads']} torch threads)")
    print(f"bench_gpu: {result['plan']['shapes']} shapes on {where}; torch {env['torch']}, diffusers "
          f"{env['diffusers']}, transformers {env['transformers']}"
          + (f", CUDA {env['cuda']}" if "cuda" in env else ""))
    if not result["model_outputs_finite"]:
        print("note: the random fp16 model gives non-finite outputs; the timings stand, the images do not")
    head = f"{'run':<10}{'frames':>7}{'dfm f/s':>10}{'naive f/s':>11}{'ratio':>8}" \
           f"{'UNet calls (dfm=expected, naive)':>36}{'overhead':>10}{'peak VRAM':>11}"
    print("\n" + head)
    for name, r in result["runs"].items():
        d, n = r["dfm"], r.get("naive")
        vram = f"{d['peak_vram_bytes'] / 1e9:.2f} GB" if d["peak_vram_bytes"] is not None else "-"
        calls = f"{d['unet_calls']}={d['expected_unet_calls']}" + ("" if r["unet_calls_exact"] else " MISMATCH") + \
            (f", {n['unet_calls']}" if n else "")
        print(f"{name:<10}{d['frames']:>7}{d['fps']:>10.3f}{(n['fps'] if n else float('nan')):>11.3f}"
              f"{r.get('speedup', float('nan')):>7.2f}x{calls:>36}{100 * r['overhead']:>9.1f}%{vram:>11}")
    stages = sorted({k for r in result["runs"].values() for k in r["dfm"]["per_frame_ms"]} - {"load"})
    print("\ndfm per-stage time per frame (ms; StageTimer synchronised with the device; write = writer thread)")
    print(f"{'stage':<18}" + "".join(f"{name:>12}" for name in result["runs"]))
    for stage in [*stages, "untimed"]:
        cells = []
        for r in result["runs"].values():
            v = r["dfm"]["untimed_per_frame_ms"] if stage == "untimed" else r["dfm"]["per_frame_ms"].get(stage)
            cells.append(f"{v:>12.2f}" if v is not None else f"{'-':>12}")
        print(f"{stage:<18}" + "".join(cells))
    print(f"{'UNet ms/call':<18}" + "".join(f"{r['unet_ms_per_call']:>12.2f}" for r in result["runs"].values()))
    naive = {k: r["naive"] for k, r in result["runs"].items() if "naive" in r}
    print("\nnaive loop per frame (ms): " + "; ".join(
        f"{k}: " + ", ".join(f"{s} {v:.1f}" for s, v in n["per_frame_ms"].items()) for k, n in naive.items()))
    sw = result.get("switches")
    if sw:
        print(f"\nspeed-up switches ({sw['frames']}-frame 2D render each; base = {result['speedups']['applied']}, "
              f"attention processors {result['speedups']['attention_processors']})")
        for name, r in sw["runs"].items():
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["per_frame_ms"].items() if k in ("denoise", "decode",
                                                                                              "encode", "effects"))
            warm = f"; compile warm-up {r['compile_warmup_s']:.1f} s" if r["compile_warmup_s"] else ""
            print(f"  {name:<22}{r['fps']:>9.3f} f/s {r['vs_base']:>6.2f}x  ms/frame: {stages}{warm}")
        vt = sw["vae_tiling"]
        gb = {k: (f", peak {vt[k]['peak_vram_bytes'] / 1e9:.2f} GB" if vt[k]["peak_vram_bytes"] else "")
              for k in ("off", "on")}
        print(f"  VAE decode at {vt['size']}²: tiling off {vt['off']['decode_s']:.3f} s{gb['off']}, "
              f"on {vt['on']['decode_s']:.3f} s{gb['on']}")
    if result.get("controlnet"):
        import bench_controlnet

        bench_controlnet.print_case(result["controlnet"])
    ok = verdicts(result)
    label = "targets" if result["meaningful"] else "targets (not meaningful: tiny shapes or no GPU)"
    print(f"\n{label}: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in ok.items()))
    print("phases (s): " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in result["phases_s"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU (the default without CUDA)")
    ap.add_argument("--device", default="auto", help="auto (cuda when there is one), cuda, cuda:N, cpu")
    ap.add_argument("--shapes", choices=("full", "tiny"), help="override the model shapes of the plan")
    for name in ("size", "frames", "steps", "turbo-frames", "turbo-steps", "floor-calls"):
        ap.add_argument(f"--{name}", type=int, help=f"override the plan's {name.replace('-', ' ')}")
    ap.add_argument("--strength", type=float)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: 1 for tiny shapes)")
    ap.add_argument("--json", type=Path, help="where to write the results (default outputs/bench-gpu[-cpu-smoke].json)")
    ap.add_argument("--workdir", type=Path, help="build models and renders here (default: a temporary folder)")
    ap.add_argument("--no-switches", action="store_true", help="skip the speed-up ablation runs")
    ap.add_argument("--switch-frames", type=int, help="frames of each ablation run (default 12; smoke 2)")
    ap.add_argument("--ablate-compile", action="store_true",
                    help="also time a torch.compile'd UNet in the ablation (its warm-up is reported apart)")
    ap.add_argument("--flow", action=argparse.BooleanOptionalAction, default=None,
                    help="time a Flux- and an SD3-shaped model (default: on with full shapes, off for tiny)")
    ap.add_argument("--controlnet", action=argparse.BooleanOptionalAction, default=None,
                    help="time one ControlNet unit on the 2D scene (default: on with full shapes, off for tiny)")
    from dfm.runtime import speedups

    speedups.add_arguments(ap)  # the options of the main runs (the ablation flips each from these)
    args = ap.parse_args(argv)

    smoke = args.cpu_smoke or (args.device == "auto" and not torch.cuda.is_available())
    if smoke and args.device == "auto":
        args.device = "cpu"
    plan = SMOKE if smoke else FULL
    overrides = {k: getattr(args, k) for k in ("shapes", "size", "frames", "steps", "turbo_frames", "turbo_steps",
                                                "floor_calls", "strength", "switch_frames")
                 if getattr(args, k) is not None}
    plan = replace(plan, **overrides)
    if args.threads or plan.shapes == "tiny":
        torch.set_num_threads(args.threads or 1)  # tiny tensors gain nothing from threads, and lose when cores are busy
    json_path = args.json or ROOT / "outputs" / ("bench-gpu-cpu-smoke.json" if smoke else "bench-gpu.json")

    with _common.workdir(args.workdir, "dfm-bench-gpu-") as work:
        result = benchmark(plan, args.device, work, dtype=args.dtype, speed=speedups.from_args(args),
                           ablate=not args.no_switches, ablate_compile=args.ablate_compile,
                           controlnet=args.controlnet if args.controlnet is not None else plan.shapes == "full")
        if args.flow if args.flow is not None else plan.shapes == "full":
            _common.release_memory()
            result["flow"] = {kind: flow_case(kind, plan, args.device, work) for kind in ("flux", "sd3")}
    result["verdicts"] = verdicts(result)
    if result.get("flow"):
        result["verdicts"]["flow_calls_exact"] = all(c["unet_calls_exact"] for c in result["flow"].values())
    _common.write_json(json_path, result)
    print_table(result)
    for kind, case in (result.get("flow") or {}).items():
        d = case["dfm"]
        print(f"\n{kind} ({case['family']}, {case['size']}², {case['dtype']}): {d['fps']:.3f} frames/s, transformer "
              f"calls {d['unet_calls']}/{d['expected_unet_calls']}, {case['transformer_ms_per_call']:.1f} ms/call, "
              f"overhead {100 * case['overhead']:.1f} %, peak VRAM {d['peak_vram_bytes']}")
    print(f"\nwrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
