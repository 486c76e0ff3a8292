"""Device and dtype choice: fp16 on CUDA, fp32 elsewhere."""

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


def pick_device(device: str = "auto") -> Placement:
    """`auto` takes CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
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
        return Placement(dev, torch.float16)
    if dev.type == "mps":
        if not _mps_available():
            raise RenderError("device 'mps' asked for, but MPS is not available", "use --device cpu or auto")
        return Placement(dev, torch.float32)
    if dev.type == "cpu":
        return Placement(dev, torch.float32)
    raise RenderError(f"device {device!r} is not supported", "use auto, cpu, cuda, cuda:N or mps")
