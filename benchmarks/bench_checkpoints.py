"""Disk cost of what incremental re-render keeps after a render, per frame at 512² (not a test).

A restart at any frame of a 2D/3D render needs the state there; dfm rebuilds it by replaying the frames
before it, decoding each diffusion from its final latents, which every render keeps in
`.dfm-state/latents/` (lossless: a header and the tensor's bytes, byte-shuffled and zlib-compressed).
Prints:

1. the latents of one diffusion in Stable Diffusion's geometry at --size (SD 1.x/2.x: 4 × size/8 ×
   size/8 float32), raw and as stored, measured on N(0, 1) values and on crops of the tiny model's own
   final latents; per frame that is one diffusion every `cadence` frames;
2. a real render of the tiny test model at --size (its VAE downsamples by 2, not 8, so its latents are
   16× SD's): the files kept (latents, rendered.json) next to the frames' PNGs, and the time of an
   incremental re-render that replays to the last frame;
3. for comparison, the resume checkpoint (`state.pt`: the live diffusions and the colour reference as
   float32 images) that keeping one per frame would cost.

    .venv/bin/python benchmarks/bench_checkpoints.py            # --size 512 --frames 6 --cadence 2 --steps 4
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: offline, quiet model loading, tests/ importable)
import numpy as np
import torch
from tiny_models import make_table, save_model_forms

from dfm.runtime import resume
from dfm.runtime.frame import RenderState
from dfm.runtime.render import render


def kb(n: float) -> str:
    return f"{n / 1024:,.1f} KB"


def stored(latents: torch.Tensor) -> int:
    return len(resume.encode_latents(latents))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--cadence", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    size, cadence = args.size, args.cadence
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = save_model_forms(tmp / "models")
        kw = dict(mode="2d", cadence=cadence, size=(size, size), model=str(models["folder"]), zoom=1.01, angle=0.5,
                  strength=0.5, steps=args.steps, color_coherence="lab")
        table = make_table(args.frames, **kw)
        out = tmp / "out"
        start = time.perf_counter()
        report = render(table, out, device="cpu")
        full = time.perf_counter() - start
        files = resume.latents_files(out)
        latents = [resume.load_latents(out, i) for i in sorted(files)]
        shape = tuple(latents[0].shape)

        # 1. SD's geometry
        side = size // 8
        sd_shape = (1, 4, side, side)
        raw = int(np.prod(sd_shape)) * 4
        normal = stored(torch.randn(sd_shape))
        crops = [stored(x[..., :side, :side].contiguous()) for x in latents]
        crop = float(np.mean(crops))
        print(f"1. SD 1.x/2.x at {size}²: latents {sd_shape} float32 = {kb(raw)} raw per diffusion")
        print(f"   stored (shuffled zlib): N(0,1) {kb(normal)} ({normal / raw:.0%}), tiny-model latent crops "
              f"{kb(crop)} ({crop / raw:.0%})")
        print(f"   per frame with cadence {cadence}: {kb(normal / cadence)} (cadence 1: {kb(normal)}); "
              f"300 frames: {normal * 300 / cadence / 2**20:,.1f} MB")

        # 2. the tiny model's render
        kept = sum(p.stat().st_size for p in files.values())
        record = resume.record_path(out).stat().st_size
        pngs = sum(p.stat().st_size for p in (out / "frames").glob("*.png"))
        print(f"2. tiny model, {args.frames} frames of {size}², cadence {cadence}: full render {full:.1f} s, "
              f"{report.unet_calls} UNet calls")
        print(f"   latents {shape} {latents[0].dtype}: {len(files)} files, {kb(kept)} "
              f"({kb(kept / len(files))} per diffusion, {kb(kept / args.frames)} per frame; raw "
              f"{kb(latents[0].numel() * latents[0].element_size())} per diffusion)")
        print(f"   rendered.json (the table): {kb(record)}; frames' PNGs: {kb(pngs / args.frames)} per frame")
        edited = table.with_columns(zoom=np.where(np.arange(args.frames) == args.frames - 1, 1.03, table["zoom"]))
        start = time.perf_counter()
        again = render(edited, out, device="cpu")
        print(f"   edited last frame: {again.kept}; {time.perf_counter() - start:.1f} s "
              f"(replay {again.timings.get('replay', 0.0):.2f} s), {again.unet_calls} UNet calls")

        # 3. a full checkpoint per frame, for comparison
        img = torch.rand(1, 3, size, size)
        state = RenderState(next_frame=1, at=0, buffers={0: img, cadence: img.clone()}, color_ref=img.clone())
        buf = io.BytesIO()
        torch.save(resume.Snapshot(state, {}).data(), buf)
        print(f"3. a resume checkpoint at {size}² (2 buffers + colour reference, float32): "
              f"{buf.tell() / 2**20:,.1f} MB; kept for every frame that is {buf.tell() / 2**20:,.1f} MB per frame")


if __name__ == "__main__":
    main()
