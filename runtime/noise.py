"""The starting noise of one diffusion: the row's seed, A1111's variation seed (subseed) and its
"resize seed from" size.

A1111's `create_random_tensors` (modules/rng.py `ImageRNG.first` today) draws the noise of the seed and,
when `subseed_strength` is not 0, the noise of the subseed, and moves from the first to the second by its
spherical interpolation `slerp`. dfm does the same with the frame's generator (seeded from the row's seed)
and a generator of its own for the subseed, so a strength of 0 draws nothing more and changes nothing.

"Resize seed from" (`seed_resize_from_w/h`, dfm's `seed_resize_from WxH`) keeps a seed's composition
when the frame size changes: the seed's (and subseed's) noise is drawn at the latent shape of the other
size and slerped there; the frame's noise is then the frame-sized noise of the seed with that noise laid
over its centre (centred, cropped where the other size is larger). The frame's own generator draws the
frame-sized noise, as A1111's does, so the sampler's later draws are the same with and without resizing;
a "from" size equal to the frame's is exactly no resize.
"""

from __future__ import annotations

import torch
from torch import Tensor


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, *, subseed: int = 0,
                  subseed_strength: float = 0.0, resize_from: tuple[int, int] | None = None) -> Tensor:
    """Gaussian noise of `shape` (B, C, H, W) from `generator`, moved towards the subseed's noise by
    `subseed_strength`; with `resize_from` (latent height, width) drawn at that size and centred in `shape`."""
    device = generator.device
    target = tuple(int(n) for n in shape)
    draw = target if resize_from is None else (*target[:-2], int(resize_from[0]), int(resize_from[1]))
    if draw == target:
        noise = torch.randn(target, generator=generator, device=device, dtype=torch.float32)
    else:  # A1111 draws the other size's noise from a fresh generator of the seed, then the frame-sized one
        seeded = torch.Generator(device=device).manual_seed(generator.initial_seed())
        noise = torch.randn(draw, generator=seeded, device=device, dtype=torch.float32)
    strength = float(subseed_strength)
    if strength != 0.0:
        sub_gen = torch.Generator(device=device).manual_seed(int(subseed))
        sub = torch.randn(draw, generator=sub_gen, device=device, dtype=torch.float32)
        # A1111 slerps each image's (C, H, W) noise on its own
        noise = torch.stack([slerp(strength, n, s) for n, s in zip(noise, sub, strict=True)])
    if draw == target:
        return noise
    frame = torch.randn(target, generator=generator, device=device, dtype=torch.float32)
    return centred(noise, frame)


def centred(noise: Tensor, frame: Tensor) -> Tensor:
    """`frame` with `noise` laid over its centre along the last two axes, `noise` cropped to its centre
    where it is larger (A1111's offsets: half the size difference, rounded towards minus infinity)."""
    out = frame.clone()
    region_out, region_in = [], []
    for size_out, size_in in zip(frame.shape[-2:], noise.shape[-2:], strict=True):
        d = (size_out - size_in) // 2
        n = size_in if d >= 0 else size_in + 2 * d
        region_out.append(slice(max(d, 0), max(d, 0) + n))
        region_in.append(slice(max(-d, 0), max(-d, 0) + n))
    out[..., region_out[0], region_out[1]] = noise[..., region_in[0], region_in[1]]
    return out


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


__all__ = ["centred", "initial_noise", "slerp"]
