"""Per-frame image effects; the order a frame applies them in is written once, `frame.INIT_EFFECTS`.

Pure functions of a float32 frame tensor (N, 3, H, W) in [0, 1] on the render device, values from one
FrameTable row and, for noise, an explicit generator. Nothing here touches a global RNG, and nothing
waits for the device: constants (colour matrices, blur kernels) are made once per device and cached,
and on a GPU the histogram matching needs no data-dependent sizes for the frame being matched
(torch.unique would copy its size to the host, a sync per channel per frame); the reference's
histograms, which only change with the reference, are computed once per reference.
"""

from __future__ import annotations

import weakref
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

COLOR_SPACES = ("none", "rgb", "hsv", "lab")


@lru_cache(maxsize=32)
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small constant tensor on the device, made once (a host-to-device copy from pageable memory
    waits for the device's queue to drain: one per frame would stall the GPU loop)."""
    return torch.tensor(values, dtype=dtype, device=device)

# ---- colour spaces (same definitions as OpenCV's float conversions) --------------------------------


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """H in degrees [0, 360), S and V in [0, 1], as cv2.COLOR_RGB2HSV on float32 input."""
    r, g, b = rgb.unbind(-3)
    v, _ = rgb.max(-3)
    mn, _ = rgb.min(-3)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = delta.clamp_min(1e-12)
    h = torch.where(
        v == r, 60 * (g - b) / safe, torch.where(v == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe)
    )
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    h = torch.where(h < 0, h + 360, h)
    return torch.stack([h, s, v], dim=-3)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv.unbind(-3)
    h = torch.remainder(h, 360) / 60

    def channel(n: float) -> Tensor:
        k = torch.remainder(n + h, 6)
        return v - v * s * (torch.minimum(k, 4 - k).clamp(0, 1))

    return torch.stack([channel(5), channel(3), channel(1)], dim=-3)


_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)  # D65, as OpenCV


def _srgb_to_linear(c: Tensor) -> Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp_min(0) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: Tensor) -> Tensor:
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp_min(0) ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """CIE L*a*b* (L in [0, 100]) of sRGB in [0, 1], as cv2.COLOR_RGB2Lab on float32 input."""
    m = _constant(_RGB_TO_XYZ, rgb.dtype, rgb.device)
    white = _constant(_WHITE, rgb.dtype, rgb.device).view(3, 1, 1)
    xyz = torch.einsum("ij,...jhw->...ihw", m, _srgb_to_linear(rgb)) / white
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    y = xyz.select(-3, 1)
    lum = torch.where(y > eps, 116 * fy - 16, 903.3 * y)
    return torch.stack([lum, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: Tensor) -> Tensor:
    lum, a, b = lab.unbind(-3)
    fy = (lum + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200
    d = 6 / 29

    def finv(t: Tensor) -> Tensor:
        return torch.where(t > d, t**3, 3 * d * d * (t - 4 / 29))

    y = torch.where(lum > 903.3 * d**3, fy**3, lum / 903.3)
    white = _constant(_WHITE, lab.dtype, lab.device).view(3, 1, 1)
    xyz = torch.stack([finv(fx), y, finv(fz)], dim=-3) * white
    m_inv = _xyz_to_rgb(lab.dtype, lab.device)
    return _linear_to_srgb(torch.einsum("ij,...jhw->...ihw", m_inv, xyz))


@lru_cache(maxsize=8)
def _xyz_to_rgb(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The inverse of _RGB_TO_XYZ, inverted in float64 on the host once, then cast and moved."""
    return torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).to(dtype).to(device)


_TO_SPACE = {"rgb": lambda x: x, "hsv": rgb_to_hsv, "lab": rgb_to_lab}
_FROM_SPACE = {"rgb": lambda x: x, "hsv": hsv_to_rgb, "lab": lab_to_rgb}


# ---- histogram matching --------------------------------------------------------------------------------


def interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """numpy.interp on tensors: piecewise linear, constant beyond the ends; `xp` increasing."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    i = torch.searchsorted(xp, x, right=True).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = ((x - x0) / (x1 - x0)).clamp(0, 1)
    return f0 + w * (f1 - f0)


def reference_quantiles(reference: Tensor) -> tuple[Tensor, Tensor]:
    """(quantile, value) of each distinct value of `reference`, float64: the curve a source is matched to."""
    ref_values, ref_counts = torch.unique(reference.flatten(), return_counts=True)
    ref_quantiles = torch.cumsum(ref_counts, 0).to(torch.float64) / reference.numel()
    return ref_quantiles, ref_values.to(torch.float64)


def match_channel(source: Tensor, reference: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """Give `source` the value distribution of `reference` (skimage's match_histograms, one channel):
    each distinct source value goes to the reference value at the same quantile. `reference` may be
    given as its `reference_quantiles`.

    Two ways to the same numbers: on the CPU, skimage's own (torch.unique's distinct values and counts);
    on a GPU, where torch.unique must copy its output size to the host (a sync per channel per frame),
    `match_sorted`."""
    curve = reference if isinstance(reference, tuple) else reference_quantiles(reference)
    if source.device.type == "cpu":
        return match_unique(source, curve)
    return match_sorted(source, curve)


def match_unique(source: Tensor, curve: tuple[Tensor, Tensor]) -> Tensor:
    """The quantile of each distinct value is the count of source values <= it over the size (cumsum of
    torch.unique's counts); interp maps it onto the reference's curve."""
    _, inverse, counts = torch.unique(source.flatten(), return_inverse=True, return_counts=True)
    quantiles = torch.cumsum(counts, 0).to(torch.float64) / source.numel()
    return interp(quantiles, *curve).to(source.dtype)[inverse].view_as(source)


def match_sorted(source: Tensor, curve: tuple[Tensor, Tensor]) -> Tensor:
    """match_unique without a data-dependent size: the count of values <= each value comes from a sort and
    a searchsorted of every value into the sorted values (the same integers), and interp runs per pixel
    instead of per distinct value (the same numbers)."""
    flat = source.flatten()
    at_or_below = torch.searchsorted(torch.sort(flat).values, flat, right=True)
    quantiles = at_or_below.to(torch.float64) / source.numel()
    return interp(quantiles, *curve).to(source.dtype).view_as(source)


# The reference's curves in one colour space, kept for the reference they came from (colour coherence's
# reference is the first warped frame of a render, the same tensor for every frame after it; the loop
# never changes a tensor in place, and `_version` would show it if something did).
_reference_cache: dict[str, tuple[weakref.ref, int, list[list[tuple[Tensor, Tensor]]]]] = {}


def _version(tensor: Tensor) -> int:
    """In-place change counter; inference-mode tensors have none (-1): the loop never changes one in place."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def _reference_curves(reference: Tensor, space: str) -> list[list[tuple[Tensor, Tensor]]]:
    hit = _reference_cache.get(space)
    if hit is not None and hit[0]() is reference and hit[1] == _version(reference):
        return hit[2]
    converted = _TO_SPACE[space](reference)
    curves = [[reference_quantiles(converted[n, c]) for c in range(converted.shape[1])]
              for n in range(converted.shape[0])]
    _reference_cache[space] = (weakref.ref(reference), _version(reference), curves)
    return curves


def _match_curves(source: Tensor, curves: list[list[tuple[Tensor, Tensor]]]) -> Tensor:
    out = torch.empty_like(source)
    for n in range(source.shape[0]):
        for c in range(source.shape[1]):
            out[n, c] = match_channel(source[n, c], curves[min(n, len(curves) - 1)][c])
    return out


def match_histograms(source: Tensor, reference: Tensor) -> Tensor:
    """Per-channel histogram matching of (N, C, H, W) tensors, image by image."""
    curves = [[reference_quantiles(reference[n, c]) for c in range(reference.shape[1])]
              for n in range(reference.shape[0])]
    return _match_curves(source, curves)


def color_coherence(frame: Tensor, reference: Tensor, space: str) -> Tensor:
    """Deforum's maintain_colors: match the frame's histograms to the reference in `space`."""
    if space == "none":
        return frame
    matched = _match_curves(_TO_SPACE[space](frame), _reference_curves(reference, space))
    return _FROM_SPACE[space](matched).clamp(0, 1)


def grayscale(frame: Tensor) -> Tensor:
    """Luma (ITU-R BT.601, as cv2.COLOR_RGB2GRAY) copied to the three channels."""
    weights = _constant((0.299, 0.587, 0.114), frame.dtype, frame.device).view(1, 3, 1, 1)
    return (frame * weights).sum(1, keepdim=True).expand_as(frame).contiguous()


# ---- contrast, unsharp mask, noise ------------------------------------------------------------------------


def contrast(frame: Tensor, amount: float) -> Tensor:
    """Gain on the frame, clipped to [0, 1] (Deforum 0.7 clips in its unsharp step, always on there).

    A negative gain is what Deforum's `(img * contrast).round().astype(np.uint8)` makes of it: each 8-bit value
    wraps around 256, so -1 turns a pixel into its negative (256 - v) and -0.5 into a brighter negative."""
    if amount == 1.0:
        return frame
    if amount >= 0:
        return (frame * amount).clamp(0, 1)
    levels = torch.round(frame.clamp(0, 1) * 255 * amount)
    return torch.remainder(levels, 256) / 255


def gaussian_kernel_1d(kernel: int, sigma: float, device: torch.device) -> Tensor:
    """cv2.getGaussianKernel(kernel, sigma); kernel 0 derives the size from sigma as OpenCV does for 8-bit.
    Made once per (size, sigma, device): the frame loop asks for the same kernel every frame."""
    return _gaussian_kernel(int(kernel), float(sigma), torch.device(device))


@lru_cache(maxsize=16)
def _gaussian_kernel(kernel: int, sigma: float, device: torch.device) -> Tensor:
    if kernel <= 0:
        kernel = int(round(sigma * 3 * 2 + 1)) | 1
    kernel |= 1  # an even size (which OpenCV refuses) is taken as the next odd one
    if sigma <= 0:  # OpenCV's sigma for a kernel size, as cv2.GaussianBlur takes sigma 0
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma * sigma))
    return (k / k.sum()).to(torch.float32).to(device)


def gaussian_blur(frame: Tensor, kernel: int, sigma: float) -> Tensor:
    """Separable Gaussian blur with OpenCV's default border (reflect-101)."""
    k = gaussian_kernel_1d(kernel, sigma, frame.device).to(frame.dtype)
    r = k.numel() // 2
    c = frame.shape[1]
    x = frame
    # reflect padding needs pad < size; tiny frames with huge kernels fall back to replicate
    mode = "reflect" if r < min(frame.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x


def unsharp_mask(frame: Tensor, kernel: int, sigma: float, amount: float, threshold: float) -> Tensor:
    """(amount + 1)·img − amount·blur, clipped; pixels whose difference from the blur is below
    threshold/255 stay as they were (what Deforum intends; its threshold > 0 crashes)."""
    if amount <= 0:
        return frame
    blurred = gaussian_blur(frame, kernel, float(sigma))
    sharp = ((amount + 1) * frame - amount * blurred).clamp(0, 1)
    if threshold > 0:
        keep = (frame - blurred).abs() < threshold / 255
        sharp = torch.where(keep, frame, sharp)
    return sharp


def add_noise(frame: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise of std `amount` in [-1, 1] pixel units (Deforum's), i.e. amount/2 on [0, 1] frames.
    Not clipped, as in Deforum: the VAE sees the noisy values. A negative amount flips the draw's sign, as
    Deforum's `sample + randn * amount` does."""
    if amount == 0:
        return frame
    eps = torch.randn(frame.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return frame + eps.to(frame.device, frame.dtype) * (amount / 2)


def blend(older: Tensor, newer: Tensor, weight: float) -> Tensor:
    """Cadence tween: (1 - weight)·older + weight·newer."""
    return torch.lerp(older, newer, float(weight))
