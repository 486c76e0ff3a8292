"""Per-frame image effects, in Deforum's order: colour coherence -> contrast -> unsharp mask -> noise.

Pure functions of a float32 frame tensor (N, 3, H, W) in [0, 1] on the render device, values from one
FrameTable row and, for noise, an explicit generator. Nothing here touches the CPU or a global RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

COLOR_SPACES = ("none", "rgb", "hsv", "lab")

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
    m = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
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
    white = torch.tensor(_WHITE, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    xyz = torch.stack([finv(fx), y, finv(fz)], dim=-3) * white
    m_inv = torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).to(lab.dtype).to(lab.device)
    return _linear_to_srgb(torch.einsum("ij,...jhw->...ihw", m_inv, xyz))


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


def match_channel(source: Tensor, reference: Tensor) -> Tensor:
    """Give `source` the value distribution of `reference` (skimage's match_histograms, one channel):
    each distinct source value goes to the reference value at the same quantile."""
    values, inverse, counts = torch.unique(source.flatten(), return_inverse=True, return_counts=True)
    ref_values, ref_counts = torch.unique(reference.flatten(), return_counts=True)
    quantiles = torch.cumsum(counts, 0).to(torch.float64) / source.numel()
    ref_quantiles = torch.cumsum(ref_counts, 0).to(torch.float64) / reference.numel()
    mapped = interp(quantiles, ref_quantiles, ref_values.to(torch.float64)).to(source.dtype)
    return mapped[inverse].view_as(source)


def match_histograms(source: Tensor, reference: Tensor) -> Tensor:
    """Per-channel histogram matching of (N, C, H, W) tensors, image by image."""
    out = torch.empty_like(source)
    for n in range(source.shape[0]):
        for c in range(source.shape[1]):
            out[n, c] = match_channel(source[n, c], reference[min(n, reference.shape[0] - 1), c])
    return out


def color_coherence(frame: Tensor, reference: Tensor, space: str) -> Tensor:
    """Deforum's maintain_colors: match the frame's histograms to the reference in `space`."""
    if space == "none":
        return frame
    matched = match_histograms(_TO_SPACE[space](frame), _TO_SPACE[space](reference))
    return _FROM_SPACE[space](matched).clamp(0, 1)


def grayscale(frame: Tensor) -> Tensor:
    """Luma (ITU-R BT.601, as cv2.COLOR_RGB2GRAY) copied to the three channels."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=frame.dtype, device=frame.device).view(1, 3, 1, 1)
    return (frame * weights).sum(1, keepdim=True).expand_as(frame).contiguous()


# ---- contrast, unsharp mask, noise ------------------------------------------------------------------------


def contrast(frame: Tensor, amount: float) -> Tensor:
    """Gain on the frame, clipped to [0, 1] (Deforum 0.7 clips in its unsharp step, always on there)."""
    return frame if amount == 1.0 else (frame * amount).clamp(0, 1)


def gaussian_kernel_1d(kernel: int, sigma: float, device: torch.device) -> Tensor:
    """cv2.getGaussianKernel(kernel, sigma); kernel 0 derives the size from sigma as OpenCV does for 8-bit."""
    if kernel <= 0:
        kernel = int(round(sigma * 3 * 2 + 1)) | 1
    kernel |= 1  # an even size (which OpenCV refuses) is taken as the next odd one
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
    blurred = gaussian_blur(frame, kernel, max(float(sigma), 1e-6))
    sharp = ((amount + 1) * frame - amount * blurred).clamp(0, 1)
    if threshold > 0:
        keep = (frame - blurred).abs() < threshold / 255
        sharp = torch.where(keep, frame, sharp)
    return sharp


def add_noise(frame: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise of std `amount` in [-1, 1] pixel units (Deforum's), i.e. amount/2 on [0, 1] frames.
    Not clipped, as in Deforum: the VAE sees the noisy values."""
    if amount <= 0:
        return frame
    eps = torch.randn(frame.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return frame + eps.to(frame.device, frame.dtype) * (amount / 2)


def blend(older: Tensor, newer: Tensor, weight: float) -> Tensor:
    """Cadence tween: (1 - weight)·older + weight·newer."""
    return torch.lerp(older, newer, float(weight))
