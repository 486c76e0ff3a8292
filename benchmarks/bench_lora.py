"""What a LoRA costs per frame: changing its weight, and the UNet call unfused vs fused (not a test).

dfm keeps the adapters apart when a LoRA's weight changes over the scene (each diffused frame sets its
weights, `set_adapters`, then every sampler step runs the LoRA's extra matmuls), and fuses them into the
UNet's weights once when it never changes (runtime/networks.py). Prints:

1. the test suite's tiny model on the CPU, with a random rank-2 LoRA on every attention projection of
   the UNet and the text encoder, loaded through dfm's own `networks.prepare`: the time of one weight
   change (`FrameNetworks.apply`: UNet and text encoder adapters), and of one UNet call without a LoRA,
   with the LoRA unfused, and fused;
2. with --full (default on; --no-full skips it), an SD 1.5-shaped UNet (860 M parameters, from the
   config skeleton dfm ships in runtime/configs/sd15, weights zeroed, no download) with a random
   rank-16 LoRA on its 128 attention projections: the weight change and the fusing (with the copy of the
   weights dfm keeps to restore them exactly) — no forward pass on the CPU; with --device cuda, also a
   UNet call at 512×512 (64×64 latents, batch 2, fp16) unfused and fused.

    .venv/bin/python benchmarks/bench_lora.py            # --calls 20 --rank 16 --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: offline, quiet model loading, tests/ importable)
import torch
from tiny_models import make_table, save_model_forms

from dfm.compiler.prompt_syntax import pieces_json
from dfm.runtime import networks
from dfm.runtime.device import pick_device
from dfm.runtime.models import StableDiffusion, resolve_source
from dfm.runtime.prompts import PromptEmbeddings, PromptEncoder

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def timed(fn, calls: int, sync=lambda: None) -> float:
    """Median seconds of one call (after one warm-up call)."""
    fn()
    sync()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ms(s: float) -> str:
    return f"{s * 1e3:8.3f} ms"


def tiny_lora(folder: Path, out: Path, rank: int) -> None:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet")
    te = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder")
    torch.manual_seed(5)
    kw = dict(r=rank, lora_alpha=rank, init_lora_weights=False)
    unet = inject_adapter_in_model(LoraConfig(target_modules=ATTENTION, **kw), unet)
    te = inject_adapter_in_model(LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], **kw), te)
    state = {f"unet.{k}": v.contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    state.update({f"text_encoder.{k}": v.contiguous() for k, v in get_peft_model_state_dict(te).items()})
    save_file(state, str(out))


def with_lora(table, path: Path, weights: list[str]):
    cells = (weights * len(table))[: len(table)]
    return table.with_settings(lora=(str(path),)).with_columns(lora_weights=cells)


def bench_tiny(calls: int) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        forms = save_model_forms(root / "models")
        lora = root / "lora.safetensors"
        tiny_lora(forms["folder"], lora, 2)
        sd = StableDiffusion(resolve_source(str(forms["folder"])), pick_device("cpu"))
        sd.load()
        g = torch.Generator().manual_seed(0)
        latents, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 8, generator=g)
        t = torch.tensor(500)

        def unet_call():
            with torch.no_grad():
                sd.eps(latents, t, text)

        base = make_table(2)
        plain = timed(unet_call, calls)
        varying = with_lora(base, lora, ["[[0.8,0.8]]", "[[0.5,0.5]]"])
        networks.prepare(varying, sd, False)
        prompts = PromptEmbeddings(PromptEncoder(sd))
        frame = networks.for_renderer(varying, sd, prompts, lambda: PromptEmbeddings(PromptEncoder(sd)))
        rows = [dict(varying.row(0)), dict(varying.row(1))]
        flip = iter(range(10**9))
        change = timed(lambda: frame.apply(rows[next(flip) % 2], 0), calls)
        frame.apply(rows[0], 0)
        unfused = timed(unet_call, calls)
        pieces = pieces_json("a red cat")
        first_text = timed(lambda: PromptEmbeddings(PromptEncoder(sd))(pieces), calls)
        t0 = time.perf_counter()
        networks.prepare(with_lora(base, lora, ["[[0.8,0.8]]"]), sd, False)
        fuse_load = time.perf_counter() - t0
        fused = timed(unet_call, calls)
        print("tiny model (CPU, 1 thread), rank-2 LoRA on 32 UNet + 8 text-encoder layers, batch 2 at 8x8 latents")
        print(f"  weight change (set_adapters, UNet + text encoder): {ms(change)}")
        print(f"  prompt encoding under new text-encoder weights:    {ms(first_text)}  (once per distinct weights)")
        print(f"  UNet call, no LoRA:                               {ms(plain)}")
        print(f"  UNet call, LoRA unfused:                          {ms(unfused)}  ({unfused / plain:.2f}x)")
        print(f"  UNet call, LoRA fused:                            {ms(fused)}  ({fused / plain:.2f}x)")
        print(f"  load + fuse (prepare, whole):                     {ms(fuse_load)}")


def bench_full(calls: int, rank: int, device: str) -> None:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, inject_adapter_in_model

    skeleton = Path(networks.__file__).resolve().parent / "configs" / "sd15" / "unet"
    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(skeleton)))
    unet = unet.to_empty(device=dev).to(dtype)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)  # plausible values (zeros would make a fused matmul no test of anything)
    unet.requires_grad_(False).eval()
    build = time.perf_counter() - t0
    torch.manual_seed(1)
    unet = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=ATTENTION,
                                              init_lora_weights=False), unet, adapter_name="a")
    unet.to(dev, dtype)
    unet._hf_peft_config_loaded = True
    layers = sum(1 for m in unet.modules() if hasattr(m, "lora_A"))
    params = sum(p.numel() for name, p in unet.named_parameters() if "lora_" not in name)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    weights = iter(range(10**9))
    change = timed(lambda: unet.set_adapters(["a"], [0.5 + (next(weights) % 2) * 0.3]), calls, sync)
    copy = timed(lambda: networks._base_weights(unet), max(1, calls // 4), sync)
    print(f"SD 1.5-shaped UNet ({params / 1e6:,.0f} M parameters, {dtype}, {device}; built in {build:.1f} s), "
          f"rank-{rank} LoRA on {layers} attention projections")
    print(f"  weight change (unet.set_adapters):               {ms(change)}")
    print(f"  copy of the wrapped weights (for an exact unfuse): {ms(copy)}")
    forward = None
    if dev.type == "cuda":
        x = torch.randn(2, 4, 64, 64, device=dev, dtype=dtype)
        ctx = torch.randn(2, 77, 768, device=dev, dtype=dtype)
        step = torch.tensor(500, device=dev)

        def forward():
            with torch.no_grad():
                unet(x, step, encoder_hidden_states=ctx)

        unet.disable_lora()
        plain = timed(forward, calls, sync)
        unet.enable_lora()
        unfused = timed(forward, calls, sync)
        print(f"  UNet call 512x512 batch 2, no LoRA:              {ms(plain)}")
        print(f"  UNet call, LoRA unfused:                         {ms(unfused)}  ({unfused / plain:.2f}x)")
    t0 = time.perf_counter()
    unet.fuse_lora(adapter_names=["a"])
    sync()
    fuse = time.perf_counter() - t0
    print(f"  fuse_lora (once per render):                     {ms(fuse)}")
    if forward is not None:
        fused = timed(forward, calls, sync)
        print(f"  UNet call, LoRA fused:                           {ms(fused)}  ({fused / plain:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20, help="timed calls per figure (median)")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank of the full-size UNet")
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                    help="also the SD 1.5-shaped UNet (about 4 GB of memory in float32 on the CPU)")
    ap.add_argument("--device", default="cpu", help="device of the full-size UNet: cpu or cuda")
    args = ap.parse_args()
    if not 1 <= args.calls <= 10_000 or not 1 <= args.rank <= 1024:
        ap.error("--calls must be in 1..10000 and --rank in 1..1024")
    bench_tiny(args.calls)
    if args.full:
        bench_full(args.calls, args.rank, args.device)


if __name__ == "__main__":
    main()
