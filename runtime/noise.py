"""The starting noise of one diffusion: the row's seed, and A1111's variation seed (subseed).

A1111's `create_random_tensors` draws the noise of the seed and, when `subseed_strength` is not 0, the
noise of the subseed, and moves from the first to the second by its spherical interpolation `slerp`
(modules/processing.py). dfm does the same with the frame's generator (seeded from the row's seed) and
a generator of its own for the subseed, so a strength of 0 draws nothing more and changes nothing.
A1111's `seed_resize_from_w/h` (noise drawn at another size) is not implemented: the noise always has
the frame's own shape.
"""

from __future__ import annotations

import torch
from torch import Tensor


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, *, subseed: int = 0,
                  subseed_strength: float = 0.0) -> Tensor:
    """Gaussian noise of `shape` from `generator`, moved towards the subseed's noise by `subseed_strength`."""
    device = generator.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    strength = float(subseed_strength)
    if strength == 0.0:
        return noise
    sub_gen = torch.Generator(device=device).manual_seed(int(subseed))
    sub = torch.randn(shape, generator=sub_gen, device=device, dtype=torch.float32)
    # A1111 slerps each image's (C, H, W) noise on its own
    return torch.stack([slerp(strength, n, s) for n, s in zip(noise, sub, strict=True)])


def slerp(val: float, low: Tensor, high: Tensor) -> Tensor:
    """A1111's `slerp(val, low, high)` of two (C, H, W) noises, exactly: norms and dot products along dim 1,
    and, for nearly parallel inputs, its linear fallback (whose weights are the other way round)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


__all__ = ["initial_noise", "slerp"]
