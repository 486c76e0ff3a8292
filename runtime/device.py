"""Device and dtype choice: fp16 on CUDA, fp32 elsewhere, unless the caller asks for another dtype.

Why fp16 and not bf16 by default on CUDA: SD 1.x/2.x UNets and VAEs run in fp16 without overflow (their
published weights are fp16), fp16 keeps 3 more mantissa bits than bf16 (closer to the fp32 render), and
it runs at the same tensor-core speed. SDXL's VAE, which does overflow in fp16, is kept in fp32 by the
model loader (models.py, vae_dtype). bf16 (`--dtype bf16`) is offered where the hardware has it: CUDA
compute capability 8 or newer (Ampere+), and the CPU; older GPUs would emulate it slowly, so it is refused
there. fp16 on the CPU is refused: many CPU kernels lack it or run it slower than fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import RenderError


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype  # the models' dtype; image effects always run in float32

    @property
    def name(self) -> str:
        return str(self.device)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _dtype(dev: torch.device, dtype: str, *, bf16_first: bool = False) -> torch.dtype:
    """The models' dtype on `dev` for the asked `dtype` (auto, fp16, bf16, fp32), or a RenderError. With
    `bf16_first` (Flux, SD3: trained in bf16, and their T5 overflows in fp16) auto is bf16 on a GPU that has
    it natively (compute capability 8 and up), else fp16 there too."""
    want = dtype.strip().lower()
    if want == "auto":
        if dev.type != "cuda":
            return torch.float32
        native_bf16 = torch.cuda.get_device_capability(dev)[0] >= 8
        return torch.bfloat16 if bf16_first and native_bf16 else torch.float16
    if want not in DTYPES:
        raise RenderError(f"unknown dtype {dtype!r}", "use auto, fp16, bf16 or fp32")
    if want == "fp16" and dev.type == "cpu":
        raise RenderError("fp16 is not supported on the CPU (missing or slow kernels)", "use --dtype fp32 or bf16")
    if want == "bf16":
        if dev.type == "mps":
            raise RenderError("bf16 is not supported on MPS here", "use --dtype fp16 or fp32")
        # native bf16 tensor cores start with Ampere (compute capability 8.0); below, torch emulates it
        if dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] < 8:
            major, minor = torch.cuda.get_device_capability(dev)
            raise RenderError(f"this GPU (compute capability {major}.{minor}) has no native bf16",
                              "use --dtype fp16 (the default on CUDA) or fp32")
    return DTYPES[want]


def pick_device(device: str = "auto", dtype: str = "auto", *, bf16_first: bool = False) -> Placement:
    """`auto` takes CUDA, then Apple MPS, then the CPU; an explicit device must exist. `dtype` (auto, fp16,
    bf16, fp32) is the models' precision: auto is fp16 on CUDA (bf16 there for a model that wants it,
    `bf16_first`) and fp32 elsewhere."""
    want = device.strip().lower()
    if want == "auto":
        if torch.cuda.is_available():
            want = "cuda"
        elif _mps_available():
            want = "mps"
        else:
            want = "cpu"
    try:
        dev = torch.device(want)
    except (RuntimeError, ValueError):
        raise RenderError(f"unknown device {device!r}", "use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RenderError(
                f"device {device!r} asked for, but torch sees no CUDA GPU",
                "use --device cpu (slow), or install a CUDA build of torch",
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RenderError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s)",
                "pick an index below the GPU count, or use --device auto",
            )
        return Placement(dev, _dtype(dev, dtype, bf16_first=bf16_first))
    if dev.type == "mps":
        if not _mps_available():
            raise RenderError("device 'mps' asked for, but MPS is not available", "use --device cpu or auto")
        return Placement(dev, _dtype(dev, dtype, bf16_first=bf16_first))
    if dev.type == "cpu":
        return Placement(dev, _dtype(dev, dtype, bf16_first=bf16_first))
    raise RenderError(f"device {device!r} is not supported", "use auto, cpu, cuda, cuda:N or mps")
