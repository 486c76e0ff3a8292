"""Hybrid video (Deforum's hybrid_* keys, 2D and 3D): the input video composited into the frames, and the
video's own camera motion applied to them.

Per frame i after the first (runtime/frame.py places each step):
- hybrid motion moves every live image after the camera warp, by the motion from video frame i-1 to i (or
  from the newest image to video frame i with `hybrid_motion_use_prev_img`): a RANSAC matrix over tracked
  features (perspective, affine), or a dense optical flow (runtime/flow.py) scaled by `hybrid_flow_factor`,
  optionally zeroed where the forward-backward check fails;
- the composite blends video frame i into an image (before the camera warp, after it, or into the diffused
  image: `hybrid_composite`): a mask (depth, video depth, blend, difference; white where the video shows),
  shaped by invert, equalise, contrast and auto-contrast; then blend(prev, composite, hybrid_comp_alpha).

The mask and motion maths are numpy/cv2 on the host, shared with the motion preview; `HybridVideo` is the
render's state (the video's frames, the measured motions) and applies them to device tensors. Each pair of
images is measured once by content: flows in runtime/flow.py's FlowCache, matrices in `MatrixCache`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from .depth import DEPTH_MAP_MAX
from .flow import FlowCache, consistency_mask, estimate_flow, frame_key, to_uint8, warp_by_flow
from .warp import BORDERS, warp_matrix

COMPOSITE_STAGES = ("none", "normal", "before_motion", "after_generation")
MASK_TYPES = ("none", "depth", "video_depth", "blend", "difference")
MOTIONS = ("none", "optical_flow", "perspective", "affine")
EQUALIZE = ("none", "before", "after", "both")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # PIL's ImageOps.grayscale (ITU-R 601-2)
MATRICES_KEPT = 4096  # the matrix cache's size (72 bytes each); flows live in runtime/flow.py's FlowCache
# Deforum's feature tracking (get_transformation_matrix_from_images): corners, then pyramidal Lucas-Kanade
MAX_CORNERS, QUALITY_LEVEL, BLOCK_SIZE, RANSAC_PIXELS = 200, 0.01, 3, 5.0


# ---- the composite mask (host, float32 (H, W) in [0, 1]: white is where the video shows) -------------------


def grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB, uint8 or float in [0, 1] -> (H, W) float32 luma in [0, 1]."""
    x = rgb.astype(np.float32)
    if rgb.dtype == np.uint8:
        x /= 255.0
    return x @ LUMA


def equalize(mask: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.equalize on the mask's 256 grey levels: the levels spread so each is about as common."""
    levels = np.clip(np.rint(mask * 255), 0, 255).astype(np.int64)
    hist = np.bincount(levels.ravel(), minlength=256)
    used = hist[hist > 0]
    step = (int(used.sum()) - int(used[-1])) // 255
    if step == 0:  # one level (or nearly): nothing to spread
        return mask
    before = np.concatenate([[0], np.cumsum(hist)[:-1]])  # pixels below each level
    lut = np.minimum((step // 2 + before) // step, 255).astype(np.float32) / 255.0
    return lut[levels]


def contrast(mask: np.ndarray, factor: float) -> np.ndarray:
    """PIL's ImageEnhance.Contrast: away from (factor > 1) or towards (< 1) the mask's mean grey."""
    mean = float(mask.mean())
    return np.clip(mean + (mask - mean) * float(factor), 0.0, 1.0)


def auto_contrast(mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """The `low` percentile made black, the `high` one white, linear between (Deforum's autocontrast_grayscale;
    a flat mask, where Deforum divides by zero, is left as it is)."""
    lo, hi = np.percentile(mask, [float(low), float(high)])
    if hi <= lo:
        return mask
    return np.clip((mask - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class CompositeSettings:
    """The static half of the composite (the scene's settings); the row gives the numbers."""

    stage: str = "none"
    mask: str = "none"
    invert: bool = False
    equalize: str = "none"
    auto_contrast: bool = False

    @classmethod
    def of(cls, s: Mapping[str, object]) -> CompositeSettings:
        return cls(str(s.hybrid_composite), str(s.hybrid_comp_mask_type),
                   bool(s.hybrid_comp_mask_inverse), str(s.hybrid_comp_mask_equalize),
                   bool(s.hybrid_comp_mask_auto_contrast))


def raw_mask(kind: str, prev: np.ndarray, video: np.ndarray, *, blend_alpha: float = 0.5,
             depth: np.ndarray | None = None, video_depth: np.ndarray | None = None) -> np.ndarray | None:
    """The mask of `kind` before shaping (None for "none"); `depth`/`video_depth` are (H, W) in [0, 1], far
    white. blend: grey of prev·(1 − alpha) + video·alpha; difference: grey |prev − video|."""
    if kind == "none":
        return None
    if kind == "blend":
        a = float(blend_alpha)
        return grey(prev) * (1.0 - a) + grey(video) * a
    if kind == "difference":
        return np.abs(grey(prev) - grey(video))
    got = depth if kind == "depth" else video_depth if kind == "video_depth" else None
    if got is None:
        raise ValueError(f"mask {kind!r} needs its depth map")
    return np.asarray(got, np.float32)


def shape_mask(mask: np.ndarray, cs: CompositeSettings, row: Mapping[str, object]) -> np.ndarray:
    """Deforum's order: invert, equalise (before), contrast, auto-contrast, equalise (after)."""
    if cs.invert:
        mask = 1.0 - mask
    if cs.equalize in ("before", "both"):
        mask = equalize(mask)
    mask = contrast(mask, float(row["hybrid_comp_mask_contrast"]))
    if cs.auto_contrast:
        mask = auto_contrast(mask, float(row["hybrid_comp_mask_auto_contrast_cutoff_low"]),
                             float(row["hybrid_comp_mask_auto_contrast_cutoff_high"]))
    if cs.equalize in ("after", "both"):
        mask = equalize(mask)
    return mask.astype(np.float32)


def comp_mask(cs: CompositeSettings, row: Mapping[str, object], prev: np.ndarray, video: np.ndarray, *,
              depth: np.ndarray | None = None, video_depth: np.ndarray | None = None) -> np.ndarray | None:
    """The shaped composite mask of one frame (None without a mask type: the video everywhere)."""
    m = raw_mask(cs.mask, prev, video, blend_alpha=float(row["hybrid_comp_mask_blend_alpha"]), depth=depth,
                 video_depth=video_depth)
    return None if m is None else shape_mask(m, cs, row)


def lerp(a, b, w):
    """a + w·(b − a), exact at both ends (torch.lerp's two-sided formula): a weight of 1 gives `b` itself, so
    a full composite writes the video frame's own bytes. Host arrays or tensors; `w` a number or a mask."""
    if isinstance(a, Tensor):
        return torch.lerp(a, b, w)
    w = np.asarray(w, np.float32)
    return np.where(w < 0.5, a + (b - a) * w, b - (b - a) * (1.0 - w)).astype(np.float32)


def composite(prev, video, mask, alpha: float):
    """blend(prev, c, alpha), c = the previous frame where the mask is white and the video where it is black
    (Deforum's `Image.composite(prev, video, mask)`, so its masks mean what they mean there), the video itself
    without a mask. Host arrays ((H, W, 3) float, mask (H, W, 1)) or tensors ((1, 3, H, W), mask (1, 1, H, W))."""
    comp = video if mask is None else lerp(video, prev, mask)
    alpha = float(alpha)
    if alpha >= 1.0:
        return comp
    return prev if alpha <= 0.0 else lerp(prev, comp, alpha)


# ---- hybrid motion (host): a 3×3 forward pixel matrix, or a (H, W, 2) flow --------------------------------


def _u8_grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def motion_matrix(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """The forward 3×3 pixel matrix moving image `a`'s content to where it is in `b` (uint8 RGB): corners of
    `a` tracked into `b` (pyramidal Lucas-Kanade, no weights), then RANSAC: a homography ("perspective") or
    a rotation-scale-shift ("affine", cv2.estimateAffinePartial2D). Too few tracks give the identity."""
    ga, gb = _u8_grey(a), _u8_grey(b)
    h, w = ga.shape
    pts = cv2.goodFeaturesToTrack(ga, MAX_CORNERS, QUALITY_LEVEL, max(3, min(h, w) // 20), blockSize=BLOCK_SIZE)
    if pts is None:
        return np.eye(3)
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(ga, gb, pts, None)
    ok = status.ravel() == 1
    src, dst = pts[ok].reshape(-1, 2), nxt[ok].reshape(-1, 2)
    if kind == "perspective" and len(src) >= 4:
        m, _ = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PIXELS)
        return m if m is not None else np.eye(3)
    if kind == "affine" and len(src) >= 2:
        m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS)
        return np.vstack([m, [0.0, 0.0, 1.0]]) if m is not None else np.eye(3)
    return np.eye(3)


Estimate = Callable[[np.ndarray, np.ndarray, str], np.ndarray]


def motion_flow(a: np.ndarray, b: np.ndarray, method: str, flows: FlowCache, *, consistency: bool = False,
                blur: int = 0, estimate: Estimate = estimate_flow) -> np.ndarray:
    """The optical flow from `a` to `b` (uint8 RGB) by `method` (runtime/flow.py's convention), each direction
    measured once through `flows`; with `consistency`, zeroed where the backward flow does not bring a pixel
    back (occlusions stay put instead of smearing), through a mask blurred by `blur` pixels."""
    fwd = flows.flow(a, b, method, estimate)
    if not consistency:
        return fwd
    bwd = flows.flow(b, a, method, estimate)
    return fwd * consistency_mask(fwd, bwd, blur)[..., None]


def flow_map(flow: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap's maps pushing an image along `flow`·factor: out(x) = image(x − factor·flow(x)), as
    runtime/flow.py's warp_by_flow does on the device (Deforum's image_transform_optical_flow)."""
    h, w = flow.shape[:2]
    f = flow * float(factor)
    map_x = np.arange(w, dtype=np.float32)[None, :] - f[..., 0]
    map_y = np.arange(h, dtype=np.float32)[:, None] - f[..., 1]
    return map_x.astype(np.float32), map_y.astype(np.float32)


def move_host(image: np.ndarray, motion: np.ndarray, factor: float = 1.0, border: int = cv2.BORDER_REPLICATE):
    """`image` (H, W, C) moved by a motion (matrix or flow) on the host, bilinear (the preview's warp)."""
    h, w = image.shape[:2]
    if motion.shape == (3, 3):
        return cv2.warpPerspective(image, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
    map_x, map_y = flow_map(motion, factor)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class MatrixCache:
    """Hybrid motion matrices by (kind, the two images' contents), the oldest dropped past `size`: a pair is
    measured once per render however often it comes back (a replay, a still "video", a frozen shot)."""

    def __init__(self, size: int = MATRICES_KEPT) -> None:
        self.size = size
        self.items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.computed = 0  # matrices measured (the tests count them)

    def matrix(self, a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
        key = (kind, frame_key(a), frame_key(b))
        got = self.items.get(key)
        if got is None:
            got = self.items[key] = motion_matrix(a, b, kind)
            self.computed += 1
            if len(self.items) > self.size:
                self.items.popitem(last=False)
        return got


@dataclass(frozen=True)
class MotionSettings:
    """The scene's hybrid motion settings."""

    kind: str = "none"
    use_prev: bool = False
    method: str = "dis_medium"
    consistency: bool = False
    blur: int = 0

    @classmethod
    def of(cls, s: Mapping[str, object]) -> MotionSettings:
        return cls(str(s.hybrid_motion), bool(s.hybrid_motion_use_prev_img),
                   str(s.hybrid_flow_method), bool(s.hybrid_flow_consistency),
                   int(s.hybrid_consistency_blur))


class Motions:
    """The measured hybrid motions of a render (or a preview): matrices and flows, each pair once."""

    def __init__(self, ms: MotionSettings, flows: FlowCache | None = None, estimate: Estimate = estimate_flow):
        self.ms = ms
        self.flows = flows if flows is not None else FlowCache()
        self.estimate = estimate
        self.matrices = MatrixCache()

    def between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The motion from `a` to `b` (uint8 RGB): a 3×3 matrix, or an (H, W, 2) flow."""
        ms = self.ms
        if ms.kind == "optical_flow":
            return motion_flow(a, b, ms.method, self.flows, consistency=ms.consistency, blur=ms.blur,
                               estimate=self.estimate)
        return self.matrices.matrix(a, b, ms.kind)


# ---- the renderer's side: device tensors ---------------------------------------------------------------------


def move(frame: Tensor, motion: np.ndarray, factor: float = 1.0, border: str = "replicate") -> Tensor:
    """`frame` moved by a hybrid motion: a 3×3 matrix (the camera's warp_matrix, with the scene's border) or a
    flow scaled by `factor` (runtime/flow.py's warp_by_flow, the border replicated)."""
    if motion.shape == (3, 3):
        return warp_matrix(frame, motion, border if border in BORDERS else "replicate")
    return warp_by_flow(frame, motion, factor)


def depth_mask(depth: Tensor, kind: str) -> np.ndarray:
    """A depth map (H, W) as a mask on the saved depth maps' fixed scale (runtime/depth.py), far white."""
    return (depth.float() / DEPTH_MAP_MAX[kind]).clamp(0, 1).cpu().numpy().astype(np.float32)


class HybridVideo:
    """The hybrid video of one render: its frames (each decoded once), the motion between them (each pair
    measured once) and the composite. `frames(i)` gives video frame i on the device (for a still, the same
    image); `depth` is the depth model of the depth masks (None where the scene uses none)."""

    def __init__(self, frames: Callable[[int], Tensor], settings: Mapping[str, object], *, border: str = "replicate",
                 depth=None, flows: FlowCache | None = None, estimate: Estimate = estimate_flow) -> None:
        self.frames = frames
        self.cs = CompositeSettings.of(settings)
        self.ms = MotionSettings.of(settings)
        self.first_as_init = bool(settings.hybrid_use_first_frame_as_init_image)
        self.border = border
        self.depth = depth
        self.motions = Motions(self.ms, flows, estimate)
        self._memo: OrderedDict[int, tuple[Tensor, np.ndarray]] = OrderedDict()  # the last frames read
        self._video_depth: tuple[int, np.ndarray] | None = None

    def _read(self, i: int) -> tuple[Tensor, np.ndarray]:
        got = self._memo.get(i)
        if got is None:
            t = self.frames(i)
            got = self._memo[i] = (t, to_uint8(t))
            while len(self._memo) > 2:  # frames i-1 and i: the video reader only goes forward
                self._memo.popitem(last=False)
        return got

    def frame(self, i: int) -> Tensor:
        return self._read(i)[0]

    def host(self, i: int) -> np.ndarray:
        return self._read(i)[1]

    def motion(self, i: int, newest: Tensor | None) -> np.ndarray | None:
        """Frame i's hybrid motion (None when off, at frame 0, or with nothing to measure from): video frame
        i-1 to i, or with use_prev_img `newest` (the newest image, already warped through i) to video frame i."""
        if self.ms.kind == "none" or i < 1:
            return None
        if self.ms.use_prev:
            if newest is None:
                return None
            return self.motions.between(to_uint8(newest), self.host(i))
        return self.motions.between(self.host(i - 1), self.host(i))

    def move(self, image: Tensor, motion: np.ndarray, row: Mapping[str, object]) -> Tensor:
        """`image` moved by `motion`, a flow scaled by the row's hybrid_flow_factor."""
        factor = float(row["hybrid_flow_factor"]) if motion.shape != (3, 3) else 1.0
        return move(image, motion, factor, self.border)

    def composite(self, i: int, image: Tensor, row: Mapping[str, object], depth: Tensor | None = None) -> Tensor:
        """Video frame i composited into `image` by row i's numbers; `depth` is the frame's depth map for the
        depth mask (None: predicted from `image`)."""
        cs = self.cs
        video = self.frame(i).to(image.dtype)
        mask = None
        if cs.mask != "none":
            maps = {}
            if cs.mask == "depth":
                maps["depth"] = depth_mask(depth if depth is not None else self.depth.predict(image), self.depth.kind)
            elif cs.mask == "video_depth":
                maps["video_depth"] = self._video_depth_of(i)
            prev = to_uint8(image) if cs.mask in ("blend", "difference") else None
            m = comp_mask(cs, row, prev, self.host(i), **maps)
            mask = torch.from_numpy(m).to(image.device, image.dtype)[None, None]
        return composite(image, video, mask, float(row["hybrid_comp_alpha"]))

    def _video_depth_of(self, i: int) -> np.ndarray:
        if self._video_depth is None or self._video_depth[0] != i:
            self._video_depth = (i, depth_mask(self.depth.predict(self.frame(i)), self.depth.kind))
        return self._video_depth[1]


__all__ = ["COMPOSITE_STAGES", "MASK_TYPES", "MOTIONS", "CompositeSettings", "HybridVideo", "MatrixCache",
           "MotionSettings", "Motions", "auto_contrast", "comp_mask", "composite", "contrast", "depth_mask",
           "equalize", "flow_map", "grey", "lerp", "motion_flow", "motion_matrix", "move", "move_host", "raw_mask",
           "shape_mask"]
